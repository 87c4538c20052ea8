"""API settings: the database URL's default, secrets refused in production, auth options."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from api.config import DEVELOPMENT_SECRET_KEY, Settings


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_defaults(tmp_path: Path) -> None:
    settings = _settings(work_dir=tmp_path)
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'tritongate.db'}"
    assert settings.inference_auth == "required"
    assert settings.migrate_on_startup is True
    assert settings.access_token_expire_s == 24 * 3600
    assert settings.environment == "development"
    assert settings.secret_key_value == DEVELOPMENT_SECRET_KEY
    assert settings.cors_origins == []
    assert DEVELOPMENT_SECRET_KEY not in repr(settings)  # SecretStr


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql+asyncpg://app@db.internal:5432/tritongate"
    monkeypatch.setenv("TRITONGATE_DATABASE_URL", url)
    monkeypatch.setenv("TRITONGATE_INFERENCE_AUTH", "open")
    monkeypatch.setenv("TRITONGATE_ACCESS_TOKEN_EXPIRE_S", "600")
    monkeypatch.setenv("TRITONGATE_CORS_ORIGINS", '["http://localhost:9000"]')
    settings = _settings()
    assert settings.database_url == url
    assert settings.inference_auth == "open"
    assert settings.access_token_expire_s == 600
    assert settings.cors_origins == ["http://localhost:9000"]


def test_production_refuses_the_development_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITONGATE_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="TRITONGATE_SECRET_KEY still has its development"):
        _settings()


def test_production_refuses_a_short_secret() -> None:
    with pytest.raises(ValidationError, match="production needs at least 32"):
        _settings(environment="production", secret_key="too-short")


def test_production_accepts_a_real_secret() -> None:
    settings = _settings(environment="production", secret_key="s" * 48)
    assert settings.secret_key_value == "s" * 48


@pytest.mark.parametrize(
    "values",
    [{"inference_auth": "sometimes"}, {"access_token_expire_s": 0}, {"environment": "staging"}],
)
def test_invalid_values(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _settings(**values)


def test_cache_metrics_and_log_settings(tmp_path: Path) -> None:
    settings = _settings(work_dir=tmp_path, port=8123, log_level="debug")
    assert settings.cache_enabled and settings.redis_url_value is None
    assert settings.cache_ttl_s == 3600 and settings.cache_max_entries == 10_000
    assert settings.metrics_enabled and settings.metrics_token_value is None
    assert settings.metrics_multiproc_dir == tmp_path / "prometheus" / "8123"
    assert settings.log_level == "DEBUG" and settings.log_format == "text"
    assert not settings.access_log
    secret = _settings(redis_url="redis://:pw-123@cache:6379/0", metrics_token="tok-456")
    assert "pw-123" not in repr(secret) and "tok-456" not in repr(secret)
    assert secret.redis_url_value == "redis://:pw-123@cache:6379/0"
    assert _settings(redis_url="").redis_url_value is None
    with pytest.raises(ValidationError):
        _settings(log_format="xml")
