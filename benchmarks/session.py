"""What the steps of a scenario share while a run is in progress.

A :class:`Session` holds the :class:`~benchmarks.stack.Stack`, the inputs (loaded once, their
tensors computed once), the user's overrides (durations, concurrency, rates), the headers that
authenticate requests to the API, and the record of the scenario being run, so a later step can
use an earlier figure (the open-loop rates of the batching scenario follow the measured
capacity).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from benchmarks.baselines.limit import load_model
from benchmarks.frames import camera_frames
from benchmarks.inputs import ImageInputs, TextInputs
from benchmarks.measure import Window
from benchmarks.records import ScenarioRecord
from benchmarks.stack import ApiConfig, Stack
from serving.ort_runtime import OrtModel

Tensors = list[dict[str, np.ndarray]]


@dataclass
class Overrides:
    """Command-line overrides of the scenarios' defaults (``None``: the scenario's own)."""

    duration: float | None = None
    warmup: float | None = None
    concurrency: tuple[int, ...] | None = None
    rates: tuple[float, ...] | None = None
    rounds: int | None = None

    def window(self, default: Window) -> Window:
        return Window(
            duration=default.duration if self.duration is None else self.duration,
            warmup=default.warmup if self.warmup is None else self.warmup,
        )

    def concurrencies(self, default: tuple[int, ...]) -> tuple[int, ...]:
        return default if self.concurrency is None else self.concurrency

    def round_count(self, default: int) -> int:
        return default if self.rounds is None else self.rounds


@dataclass
class Session:
    """The state shared by every step of a run (see the module docstring)."""

    stack: Stack
    repository: Path
    config_name: str | None
    default_api: ApiConfig
    overrides: Overrides
    load_texts: Callable[[], TextInputs]
    load_images: Callable[[], ImageInputs]
    api_headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 30.0
    local_repository: bool = True  # the model files are on this machine (limit baseline)
    log: Callable[[str], None] = lambda _message: None
    record: ScenarioRecord | None = None
    # Models the limit baseline loaded, by repository, name and configuration: a scenario
    # measuring the limit several times (streams, in rounds) measures one warm session, not a
    # fresh one each time.
    limit_models: dict[tuple[Path, str, str | None], tuple[OrtModel, str]] = field(
        default_factory=dict
    )

    @property
    def remote(self) -> bool:
        return self.stack.settings.remote

    @cached_property
    def texts(self) -> TextInputs:
        return self.load_texts()

    @cached_property
    def images(self) -> ImageInputs:
        return self.load_images()

    @cached_property
    def frames(self) -> list[bytes]:
        """The photos as 640 × 480 JPEG camera frames (the WebSocket scenario's input)."""
        return camera_frames(self.images.files)

    @cached_property
    def text_tensors(self) -> Tensors:
        return self.texts.tensors()

    @cached_property
    def image_tensors(self) -> Tensors:
        return self.images.tensors()

    def limit_model(self, name: str) -> tuple[OrtModel, str]:
        """``name``'s newest version as Triton's configuration describes it, loaded once."""
        key = (self.repository, name, self.config_name)
        if key not in self.limit_models:
            self.limit_models[key] = load_model(self.repository, name, self.config_name)
        return self.limit_models[key]

    def groups(self) -> dict[str, int]:
        """Process groups of the servers running now (for CPU accounting)."""
        return self.stack.process_groups()
