"""What a benchmark run produces, as plain records: measurements, checks, scenarios, the run.

Every figure of a report lives in a :class:`Measurement`: which scenario and series (the target:
``api``, ``triton_direct``, ``book``, ``noop``, ``limit``, ...), the load (closed loop with
``concurrency`` clients, open loop at ``rate`` requests per second, or in-process), the
configuration of the target, the summary of the outcome (:meth:`LoadResult.to_dict` or the limit
baseline's figures), the latency distribution reduced to its percentiles 0..100 (plus 99.9), and
the cores each process used. Records turn into JSON with :meth:`to_dict` and back with
:meth:`from_dict` (for comparing reports).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

Mode = Literal["closed", "open", "in-process"]
CheckStatus = Literal["PASS", "FAIL", "UNSTABLE", "NOT MEASURED"]

# The latency distribution kept in reports: every whole percentile and the 99.9th, ascending.
QUANTILES: Final = (*range(100), 99.9, 100)


def latency_quantiles(latencies_ms: npt.NDArray[np.float64]) -> list[float] | None:
    """Latency (ms) at each of :data:`QUANTILES`, rounded to the microsecond; None if empty."""
    if latencies_ms.size == 0:
        return None
    values = np.percentile(latencies_ms, QUANTILES)
    return [round(float(v), 3) for v in values]


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


@dataclass
class Measurement:
    """One point of one series (see the module docstring)."""

    scenario: str
    series: str
    label: str
    mode: Mode
    concurrency: int | None = None
    rate: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    quantiles_ms: list[float] | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.result)

    @property
    def throughput(self) -> float | None:
        """Successful requests (or items, in-process) per second."""
        if not self.ok:
            return None
        if "throughput_rps" in self.result:
            return _finite(self.result["throughput_rps"])
        return _finite(self.result.get("items_per_s"))

    def latency(self, key: str) -> float | None:
        """A latency statistic in ms: ``p50``, ``p90``, ``p95``, ``p99``, ``max``, ``mean``."""
        if not self.ok:
            return None
        return _finite(self.result.get("latency", {}).get(f"{key}_ms"))

    @property
    def errors(self) -> int:
        return int(self.result.get("errors", 0)) if self.ok else 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        return cls(**data)


@dataclass
class Check:
    """A pass/fail bar the run is held to, with the figures it was decided on."""

    name: str
    bar: str
    status: CheckStatus
    detail: str
    values: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Check:
        return cls(**data)


@dataclass
class ScenarioRecord:
    """A scenario's measurements, checks, skipped parts and failures."""

    key: str
    number: int
    title: str
    description: str
    measurements: list[Measurement] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def find(self, series: str, **where: Any) -> list[Measurement]:
        """Measurements of ``series`` whose attributes (or config entries) equal ``where``."""
        found = []
        for m in self.measurements:
            if m.series != series:
                continue
            if all(
                (getattr(m, k) if hasattr(m, k) else m.config.get(k)) == v for k, v in where.items()
            ):
                found.append(m)
        return found

    def one(self, series: str, **where: Any) -> Measurement | None:
        """The last successful measurement matching, if any."""
        matching = [m for m in self.find(series, **where) if m.ok]
        return matching[-1] if matching else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "number": self.number,
            "title": self.title,
            "description": self.description,
            "measurements": [m.to_dict() for m in self.measurements],
            "checks": [c.to_dict() for c in self.checks],
            "skipped": list(self.skipped),
            "errors": list(self.errors),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScenarioRecord:
        return cls(
            key=data["key"],
            number=data["number"],
            title=data["title"],
            description=data.get("description", ""),
            measurements=[Measurement.from_dict(m) for m in data.get("measurements", [])],
            checks=[Check.from_dict(c) for c in data.get("checks", [])],
            skipped=list(data.get("skipped", [])),
            errors=list(data.get("errors", [])),
        )


SCHEMA: Final = "tritongate-bench/1"


@dataclass
class RunRecord:
    """A whole run: where, when, with what configuration and inputs, and every scenario."""

    created: str
    machine: dict[str, Any]
    configuration: dict[str, Any]
    inputs: dict[str, Any] = field(default_factory=dict)
    scenarios: list[ScenarioRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    interrupted: bool = False

    def scenario(self, key: str) -> ScenarioRecord | None:
        return next((s for s in self.scenarios if s.key == key), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "created": self.created,
            "elapsed_s": self.elapsed_s,
            "interrupted": self.interrupted,
            "machine": self.machine,
            "configuration": self.configuration,
            "inputs": self.inputs,
            "notes": list(self.notes),
            "scenarios": [s.to_dict() for s in self.scenarios],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a {SCHEMA} report (schema {data.get('schema')!r})")
        return cls(
            created=data["created"],
            machine=data["machine"],
            configuration=data["configuration"],
            inputs=data.get("inputs", {}),
            scenarios=[ScenarioRecord.from_dict(s) for s in data.get("scenarios", [])],
            notes=list(data.get("notes", [])),
            elapsed_s=float(data.get("elapsed_s", 0.0)),
            interrupted=bool(data.get("interrupted", False)),
        )
