"""Settings shared by every TritonGate command, read once from the environment (and ``.env``).

Every variable has the ``TRITONGATE_`` prefix, e.g. ``TRITONGATE_MODEL_REPOSITORY``.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "TRITONGATE_"


class ServingSettings(BaseSettings):
    """Where models and data live and how the local tritonserver runs."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore")

    model_repository: Path = Path("model_repository")
    # Scratch space: the assembled tritonserver, its log, dataset caches, export reports.
    work_dir: Path = Path(".tritongate")
    # Offline copies of data that is otherwise downloaded (see ../shared/data/README.md).
    newsgroups_archive: Path | None = None
    images_dir: Path | None = None
    # Where YOLOS weights come from: a hub id, a local directory, or "random-init".
    yolos_weights: str = "hustvl/yolos-tiny"
    yolos_seed: int = 0
    # Local tritonserver: custom model configuration (configs/<name>.pbtxt; empty = config.pbtxt).
    triton_config_name: str = "cpu"
    triton_host: str = "127.0.0.1"
    triton_http_port: int | None = None
    triton_grpc_port: int | None = None
    triton_metrics_port: int | None = None
    triton_startup_timeout: float = 180.0

    def to_environment(self) -> dict[str, str]:
        """These settings as ``TRITONGATE_*`` variables, so child processes (API workers) read
        exactly what this process resolved, command-line overrides included."""
        variables = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                text = value.get_secret_value()
            elif isinstance(value, Path):
                text = str(value.resolve())
            elif isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, str | int | float):
                text = str(value)
            else:  # lists, dicts, nested models: JSON, as pydantic-settings reads them back
                text = json.dumps(self.model_dump(mode="json", include={name})[name])
            variables[f"{ENV_PREFIX}{name.upper()}"] = text
        return variables

    @property
    def data_home(self) -> Path:
        return self.work_dir / "data"

    @property
    def artifacts_dir(self) -> Path:
        return self.work_dir / "artifacts"

    def parity_images(self) -> list[Path]:
        """Real photos for the YOLOS parity gate, if an images directory is configured."""
        if self.images_dir is None or not self.images_dir.is_dir():
            return []
        found = []
        for pattern in ("photos/*.jpg", "coco/*.jpg", "coco/*.png", "*.jpg", "*.png"):
            found.extend(sorted(self.images_dir.glob(pattern)))
        return list(dict.fromkeys(found))
