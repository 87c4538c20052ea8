"""API settings: read once from the environment (``TRITONGATE_*``, and ``.env``) and passed down."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from serving.settings import ServingSettings

# The development secret: fine on a laptop, refused when ENVIRONMENT=production.
DEVELOPMENT_SECRET_KEY = "tritongate-development-secret-change-me"
MIN_PRODUCTION_SECRET_CHARS = 32
SECRET_ADVICE = (
    "set it to a long random value, e.g. "
    '`python -c "import secrets; print(secrets.token_urlsafe(48))"`'
)
DATABASE_FILE = "tritongate.db"


class Settings(ServingSettings):
    """Everything the API process needs; see the README's configuration table."""

    # Inference: a running Triton (gRPC "host:port"); unset means `tritongate serve` starts a
    # local one. "onnxruntime" runs the repository in-process instead (no Triton binary needed).
    triton_url: str | None = None
    inference_backend: Literal["triton", "onnxruntime"] = "triton"

    # Front-end micro-batching, per model and worker process.
    batching_enabled: bool = True
    batch_max_delay_us: int = Field(default=2000, ge=0)
    batch_max_in_flight: int = Field(default=2, ge=1)
    queue_size: int = Field(default=512, ge=1)
    request_timeout_s: float = Field(default=10.0, gt=0)
    retry_after_s: int = Field(default=1, ge=1)
    model_refresh_interval_s: float = Field(default=5.0, gt=0)

    # Request limits.
    max_text_chars: int = Field(default=100_000, ge=1)
    max_batch_texts: int = Field(default=64, ge=1)
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    detection_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    preprocess_threads: int = Field(default=2, ge=1)

    # `tritongate serve`.
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default=1, ge=1)

    # Deployment: "production" refuses the development secret.
    environment: Literal["development", "production"] = "development"
    secret_key: SecretStr = SecretStr(DEVELOPMENT_SECRET_KEY)

    # Database: SQLAlchemy async URL (sqlite+aiosqlite or postgresql+asyncpg); empty means the
    # embedded SQLite file `<work_dir>/tritongate.db`. Migrations run at start-up unless disabled.
    database_url: str = ""
    migrate_on_startup: bool = True
    database_pool_size: int = Field(default=5, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)

    # Authentication.
    access_token_expire_s: int = Field(default=24 * 3600, ge=1)
    # "required": the inference endpoints need a bearer token, the login cookie or an API key;
    # "open": anyone may call them (the local demo, `make run`).
    inference_auth: Literal["open", "required"] = "required"
    # Browsers on these origins may call the API with credentials (CORS); none by default.
    cors_origins: list[str] = Field(default_factory=list)

    @property
    def secret_key_value(self) -> str:
        return self.secret_key.get_secret_value()

    @model_validator(mode="after")
    def _resolve_database_and_check_secrets(self) -> Self:
        if not self.database_url:
            path = (self.work_dir / DATABASE_FILE).resolve()
            self.database_url = f"sqlite+aiosqlite:///{path}"
        if self.environment == "production":
            secret = self.secret_key.get_secret_value()
            if secret == DEVELOPMENT_SECRET_KEY:
                raise ValueError(
                    "TRITONGATE_SECRET_KEY still has its development default while "
                    f"TRITONGATE_ENVIRONMENT=production: {SECRET_ADVICE}"
                )
            if len(secret) < MIN_PRODUCTION_SECRET_CHARS:
                raise ValueError(
                    f"TRITONGATE_SECRET_KEY has {len(secret)} characters; production needs at "
                    f"least {MIN_PRODUCTION_SECRET_CHARS}: {SECRET_ADVICE}"
                )
        return self
