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
