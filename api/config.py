"""API settings: read once from the environment (``TRITONGATE_*``, and ``.env``) and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from api.platform.timeouts import BODY_TIMEOUT_S, HEADER_TIMEOUT_S, MAX_HEADER_BYTES
from serving.settings import ServingSettings

# The development secret: fine on a laptop, refused when ENVIRONMENT=production.
DEVELOPMENT_SECRET_KEY = "tritongate-development-secret-change-me"
MIN_PRODUCTION_SECRET_CHARS = 32
SECRET_ADVICE = (
    "set it to a long random value, e.g. "
    '`python -c "import secrets; print(secrets.token_urlsafe(48))"`'
)
DATABASE_FILE = "tritongate.db"


class ModelBatching(BaseModel):
    """One model's micro-batching, where it differs from the global settings.

    A compute-bound model with one instance batches best with one batch in flight (the next one
    gathers while the model is busy) and a few milliseconds of ``idle_delay_us`` (callers answered
    by the same batch come back within a few ms of each other: without it the first one leaves
    alone and batches alternate 1, 3, 1, 3 instead of 4). Light models gain from two in flight
    (the next batch travels while one runs) and no idle delay. ``prepare_wait_us`` lets such a
    batch also wait, that much longer at most, for requests whose input is still being decoded;
    camera streams decoding at different speeds would otherwise split into groups that take turns.
    """

    max_in_flight: int | None = Field(default=None, ge=1)
    max_delay_us: int | None = Field(default=None, ge=0)
    idle_delay_us: int = Field(default=0, ge=0)
    prepare_wait_us: int = Field(default=0, ge=0)


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
    # Per model, over the two above (JSON, e.g. '{"yolos": {"max_in_flight": 1}}'); see
    # ModelBatching. The default suits YOLOS on a CPU instance (measured with 4 camera streams).
    batching_per_model: dict[str, ModelBatching] = Field(
        default_factory=lambda: {
            "yolos": ModelBatching(max_in_flight=1, idle_delay_us=5000, prepare_wait_us=50_000)
        }
    )
    queue_size: int = Field(default=512, ge=1)
    request_timeout_s: float = Field(default=10.0, gt=0)
    retry_after_s: int = Field(default=1, ge=1)
    # While Triton is unreachable a batch is retried this long (within the request deadline), so
    # a Triton restart costs latency instead of errors; 0 fails at once.
    triton_ride_through_s: float = Field(default=8.0, ge=0)
    # Inference requests in progress per model and worker process; beyond it a request gets 503
    # at once, before its body is read (api/inference/admission.py). Unset: the queue size.
    max_inference_requests: int | None = Field(default=None, ge=1)
    # ... and fewer while the model is slow: at most this many seconds' worth of its measured
    # throughput (at least 8), so accepted requests wait about this long at worst.
    admission_max_wait_s: float = Field(default=0.5, gt=0)
    model_refresh_interval_s: float = Field(default=2.0, gt=0)

    # Request limits.
    max_text_chars: int = Field(default=100_000, ge=1)
    max_batch_texts: int = Field(default=64, ge=1)
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    # Width x height, checked from the image header (413 above it): the model sees 640x480, and
    # 26 MP takes every 12 MP phone photo and 24-26 MP camera (serving.detection.MAX_IMAGE_PIXELS).
    max_image_pixels: int = Field(default=26_000_000, ge=1)
    detection_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    preprocess_threads: int = Field(default=2, ge=1)

    # Hostile input (README "Hostile input"). Request bodies other than image uploads (those
    # get max_upload_bytes plus multipart overhead): 413 past this size, nothing more is read.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    # Slow clients (api/platform/body_limit.py, api/inference/admission.py,
    # api/platform/transport.py). A request body must
    # arrive within body_timeout_s of its headers, else 408 and the connection closed (60 s: a
    # 10 MiB upload over a ~1.5 Mbit/s uplink). Inference bodies are read before they take an
    # admission slot, at most max_receiving_bodies_per_client at once per client address (IPv6
    # per /64; behind a proxy, set --forwarded-allow-ips), more: 503. A request head (request
    # line and headers) over max_header_bytes gets 431; one not complete within header_timeout_s
    # of the connection or of its first byte, 408; the connection is closed after either.
    body_timeout_s: float = Field(default=BODY_TIMEOUT_S, gt=0)
    max_receiving_bodies_per_client: int = Field(default=64, ge=1)
    max_header_bytes: int = Field(default=MAX_HEADER_BYTES, ge=1024)
    header_timeout_s: float = Field(default=HEADER_TIMEOUT_S, gt=0)
    # WebSocket detection streams, per worker process: open streams (more handshakes: 503),
    # frames per second per stream with a burst allowance (frames over it are dropped; a stream
    # over 10x the rate is closed with 1008), and seconds without a frame that decodes (junk
    # does not keep a stream alive) before closing (1000).
    stream_max_connections: int = Field(default=64, ge=1)
    stream_max_frames_per_s: float = Field(default=60.0, gt=0)
    stream_frame_burst: int = Field(default=60, ge=1)
    stream_idle_timeout_s: float = Field(default=60.0, gt=0)
    # Open streams per user and worker (per client address, IPv6 per /64, when inference is
    # open: behind a proxy, set --forwarded-allow-ips or every client shares one address), so one
    # account cannot take every place; more: 503. The benchmarks open 4 with one key, the page 1.
    stream_max_per_user: int = Field(default=8, ge=1)
    # Each authenticated stream re-checks its credential this often (token expired or revoked,
    # API key deleted, user deactivated: closed with 1008); a token's expiry closes it on time.
    stream_revalidate_s: float = Field(default=30.0, gt=0)

    # `tritongate serve`.
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = Field(default=1, ge=1)
    # `tritongate serve` and `tritongate prestart` wait this long for the database and for a
    # configured Triton (TRITONGATE_TRITON_URL) before giving up with the reason.
    prestart_timeout_s: float = Field(default=60.0, gt=0)

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

    # Login throttling (POST /token, POST /login; api/accounts/login_limits.py): failed attempts per
    # account and per client IP within a fixed window, answered with 429 + Retry-After. Shared
    # by all workers through Redis when REDIS_URL is set, else per process (bounded).
    login_rate_limit_enabled: bool = True
    login_window_s: float = Field(default=900.0, gt=0)
    login_max_attempts_per_account: int = Field(default=5, ge=1)
    login_max_attempts_per_ip: int = Field(default=20, ge=1)
    # An IP that logged into an account is "known" to it this long: the account's lock does not
    # apply there (only its own per-account-and-IP count), so strangers cannot lock a user out.
    login_known_ip_ttl_s: float = Field(default=30 * 24 * 3600.0, gt=0)
    login_max_tracked_keys: int = Field(default=100_000, ge=1)  # in memory, per process
    login_redis_prefix: str = Field(default="tritongate:login:", min_length=1)
    # Registration throttling (POST /register, the same store and switch): attempts per client
    # address (IPv6 per /64) within a fixed window, refused with 429 + Retry-After before the
    # password is hashed.
    register_window_s: float = Field(default=3600.0, gt=0)
    register_max_attempts_per_ip: int = Field(default=20, ge=1)

    # Password hashing (api/accounts/security.py): argon2id (~64 MiB and tens of ms each) on its own
    # threads (unset: one per core, at most 4). New hashes (registration, password changes) may
    # use all threads but one and at most `password_hash_max_waiting` wait; verifications
    # (logins, current-password checks) may use every thread, `password_verify_max_waiting` wait.
    # Beyond that: 503 + Retry-After.
    password_hash_threads: int | None = Field(default=None, ge=1, le=64)
    password_hash_max_waiting: int = Field(default=8, ge=0)
    password_verify_max_waiting: int = Field(default=64, ge=0)

    # Docs pages (/docs, /redoc, /openapi.json); unset: on, except when ENVIRONMENT=production.
    docs_enabled: bool | None = None

    # Prediction cache (see the README's "Caching"): in-process LRU with a TTL, or Redis (shared
    # by all workers) when REDIS_URL is set. Entries expire ``cache_ttl_s`` after they are written;
    # at most ``cache_max_entries`` are kept (least recently used evicted first).
    cache_enabled: bool = True
    cache_ttl_s: float = Field(default=3600.0, gt=0)
    cache_max_entries: int = Field(default=10_000, ge=1)
    redis_url: SecretStr | None = None  # e.g. redis://:password@cache.internal:6379/0
    cache_redis_prefix: str = Field(default="tritongate:cache:", min_length=1)
    redis_timeout_s: float = Field(default=0.25, gt=0)  # per cache operation
    # After a Redis failure the cache is bypassed this long before Redis is tried again.
    cache_retry_interval_s: float = Field(default=1.0, gt=0)
    # "Redis unavailable" is logged at most once per this interval (a metric counts every error).
    cache_warning_interval_s: float = Field(default=30.0, gt=0)

    # Metrics: GET /metrics (Prometheus text). With a token, /metrics needs
    # "Authorization: Bearer <token>"; with a port, `tritongate serve` exposes the metrics of all
    # workers on that port instead and the API port has no /metrics.
    metrics_enabled: bool = True
    metrics_token: SecretStr | None = None
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # Multiprocess metrics directory that `tritongate serve` creates, cleans and hands to the
    # workers as PROMETHEUS_MULTIPROC_DIR; unset: <work_dir>/prometheus/<port>.
    metrics_dir: Path | None = None

    # Logs: one format for ours, uvicorn's and gunicorn's; JSON lines with "json".
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    access_log: bool = False  # one INFO line per HTTP request (method, route, status, time)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def redis_url_value(self) -> str | None:
        return (self.redis_url.get_secret_value() or None) if self.redis_url else None

    @property
    def metrics_token_value(self) -> str | None:
        return (self.metrics_token.get_secret_value() or None) if self.metrics_token else None

    @property
    def metrics_multiproc_dir(self) -> Path:
        """Where `tritongate serve` keeps the workers' metric files."""
        if self.metrics_dir is not None:
            return self.metrics_dir
        return self.work_dir / "prometheus" / str(self.port)

    @property
    def docs_available(self) -> bool:
        """Whether /docs, /redoc and /openapi.json are served."""
        if self.docs_enabled is not None:
            return self.docs_enabled
        return self.environment != "production"

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
