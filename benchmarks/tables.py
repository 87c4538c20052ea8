"""Markdown tables of a report: number formats, and the tables of each kind of scenario.

* ``concurrency`` scenarios (text, detection): the headline (each series' throughput and
  p50 / p99 per concurrency, the API's ratios to the baselines), every figure of every series
  with its ratio to the book, the limit baseline per batch size.
* ``batching``: on vs off in closed loop, open-loop queueing, the ``max_delay`` and batch-size
  sweeps, each configuration also as a ratio to front-end batching off.
* ``ceiling``: the generator's own ceiling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from benchmarks.cpu_usage import GENERATOR
from benchmarks.records import Check, Measurement, ScenarioRecord
from benchmarks.scenarios import SERIES_LABELS

CONCURRENCY_SERIES = ("api", "triton_direct", "book", "noop")
SHORT_LABELS = {
    "api": "API + Triton",
    "triton_direct": "Triton direct",
    "book": "book",
    "noop": "no-op",
}


@dataclass
class Table:
    """A Markdown table; ``left`` columns are left-aligned, the others (numbers) right-aligned."""

    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    left: int = 1

    def markdown(self) -> str:
        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

        separator = ["---" if i < self.left else "---:" for i in range(len(self.headers))]
        return "\n".join([line(self.headers), line(separator), *(line(r) for r in self.rows)])


# -- formats --------------------------------------------------------------------------------------


def rps(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    if value < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return "—"
    return f"{numerator / denominator:.2f}×"


def pair(m: Measurement | None) -> str:
    """``p50 / p99`` in ms."""
    if m is None:
        return "—"
    return f"{ms(m.latency('p50'))} / {ms(m.latency('p99'))}"


def errors(m: Measurement) -> str:
    """Errors by status and kind, e.g. ``503×12, TimeoutError×3``; drops in open loop."""
    if m.error:
        return "failed"
    parts = [f"{code}×{n}" for code, n in m.result.get("errors_by_status", {}).items()]
    parts += [f"{kind}×{n}" for kind, n in m.result.get("errors_by_kind", {}).items()]
    if m.result.get("dropped"):
        parts.append(f"dropped×{m.result['dropped']}")
    return ", ".join(parts) or "0"


def cpu(m: Measurement) -> str:
    """Cores used in the window, e.g. ``gen 0.41 · api 0.93 · triton 0.55`` (idle ones left out)."""
    used = [(name, cores) for name, cores in m.cpu.items() if cores >= 0.01 or name == GENERATOR]
    used.sort(key=lambda item: (item[0] != GENERATOR, item[0]))
    return " · ".join(f"{'gen' if n == GENERATOR else n} {c:.2f}" for n, c in used) or "—"


def check_rows(checks: Sequence[Check]) -> Table:
    table = Table(["check", "result", "figures"], left=3)
    for check in checks:
        table.rows.append([check.name, f"**{check.status}**", check.detail])
    return table


# -- concurrency scenarios ------------------------------------------------------------------------


def concurrency_levels(record: ScenarioRecord) -> list[int]:
    return sorted({m.concurrency for m in record.measurements if m.concurrency is not None})


def present_series(record: ScenarioRecord) -> list[str]:
    found = {m.series for m in record.measurements if m.mode != "in-process"}
    return [s for s in CONCURRENCY_SERIES if s in found]


def headline_table(record: ScenarioRecord) -> Table:
    """Per concurrency: each series' req/s and p50 / p99, then the API's ratios."""
    series = present_series(record)
    headers = ["clients"]
    for name in series:
        short = SHORT_LABELS[name]
        headers += [f"{short} req/s", "p50 / p99 ms"] if name != "noop" else [f"{short} req/s"]
    baselines = [s for s in ("book", "triton_direct", "noop") if s in series]
    headers += [f"API ÷ {SHORT_LABELS[s]}" for s in baselines if "api" in series]
    table = Table(headers)
    for clients in concurrency_levels(record):
        found = {name: record.one(name, concurrency=clients) for name in series}
        row = [str(clients)]
        for name in series:
            m = found[name]
            row.append(rps(m.throughput if m else None))
            if name != "noop":
                row.append(pair(m))
        if "api" in series:
            api = found["api"]
            for baseline in baselines:
                other = found[baseline]
                row.append(
                    ratio(api.throughput if api else None, other.throughput if other else None)
                )
        table.rows.append(row)
    return table


def figures_table(record: ScenarioRecord) -> Table:
    """Every load measurement: percentiles, errors, ratios to the book, CPU use."""
    table = Table(
        [
            "series",
            "clients",
            "req/s",
            "p50",
            "p90",
            "p95",
            "p99",
            "max ms",
            "errors",
            "req/s ÷ book",
            "p99 ÷ book",
            "CPU cores",
        ]
    )
    for series in present_series(record):
        for m in sorted(record.find(series), key=lambda m: m.concurrency or 0):
            if m.mode == "in-process":
                continue
            book = record.one("book", concurrency=m.concurrency)
            if m.error:
                table.rows.append(
                    [SERIES_LABELS.get(series, series), str(m.concurrency)]
                    + ["—"] * 6
                    + [m.error, "—", "—", "—"]
                )
                continue
            table.rows.append(
                [
                    SERIES_LABELS.get(series, series),
                    str(m.concurrency),
                    rps(m.throughput),
                    ms(m.latency("p50")),
                    ms(m.latency("p90")),
                    ms(m.latency("p95")),
                    ms(m.latency("p99")),
                    ms(m.latency("max")),
                    errors(m),
                    ratio(m.throughput, book.throughput if book else None),
                    ratio(m.latency("p99"), book.latency("p99") if book else None),
                    cpu(m),
                ]
            )
    return table


def limit_table(record: ScenarioRecord, unit: str) -> Table | None:
    """The model alone per batch size, and the API's best throughput as a share of it."""
    limits = [m for m in record.find("limit") if m.ok]
    if not limits:
        return None
    api_best = max((m.throughput or 0.0 for m in record.find("api") if m.ok), default=0.0)
    table = Table(
        ["batch", f"{unit}/s", "call p50 ms", "call p99 ms", "best", "API best req/s ÷ this"]
    )

    def position(m: Measurement) -> tuple[int, int, int]:
        # Reports before 2026-12-03 measured the limit "before" and "after" the streams.
        when = {"before": 0, "after": 1}.get(m.config.get("measured"), 0)
        return m.config.get("round") or 0, when, m.config.get("batch_size", 0)

    def when(m: Measurement) -> str:
        if m.config.get("round") is not None:
            return f" (round {m.config['round']})"
        measured = m.config.get("measured")
        return f" ({measured} the streams)" if measured else ""

    for m in sorted(limits, key=position):
        table.rows.append(
            [
                f"{m.config.get('batch_size')}{when(m)}",
                rps(m.throughput),
                ms(m.latency("p50")),
                ms(m.latency("p99")),
                "★" if m.config.get("best") else "",
                ratio(api_best or None, m.throughput),
            ]
        )
    return table


def preprocess_line(record: ScenarioRecord) -> str | None:
    """Client-side pre-processing per image (decode + resize; the graph normalises), if measured."""
    for m in record.find("limit"):
        pre = m.result.get("preprocess") if m.ok else None
        if pre:
            latency = pre["latency"]
            return (
                f"Decoding and pre-processing one image (in-process, one thread): p50 "
                f"{ms(latency.get('p50_ms'))} ms, p99 {ms(latency.get('p99_ms'))} ms. The API "
                "does this per request; Triton direct and the limit receive ready tensors."
            )
    return None


# -- batching --------------------------------------------------------------------------------------


def is_off(m: Measurement) -> bool:
    return m.config.get("batching") is False


def batching_reference(record: ScenarioRecord) -> dict[str, object] | None:
    """The configuration with batching on that the sweeps vary (the first one measured)."""
    for m in record.measurements:
        if m.ok and m.config.get("batching"):
            return m.config
    return None


def on_off_table(record: ScenarioRecord) -> Table:
    reference = batching_reference(record)
    table = Table(
        [
            "clients",
            "on req/s",
            "on p50 / p99 ms",
            "off req/s",
            "off p50 / p99 ms",
            "on ÷ off req/s",
            "on ÷ off p99",
            "CPU cores on",
            "CPU cores off",
        ]
    )
    for clients in concurrency_levels(record):
        on = next(
            (
                m
                for m in record.find("api", concurrency=clients, mode="closed")
                if m.ok and m.config == reference
            ),
            None,
        )
        off = next(
            (
                m
                for m in record.find("api", concurrency=clients, mode="closed")
                if m.ok and is_off(m)
            ),
            None,
        )
        if on is None and off is None:
            continue
        table.rows.append(
            [
                str(clients),
                rps(on.throughput if on else None),
                pair(on),
                rps(off.throughput if off else None),
                pair(off),
                ratio(on.throughput if on else None, off.throughput if off else None),
                ratio(on.latency("p99") if on else None, off.latency("p99") if off else None),
                cpu(on) if on else "—",
                cpu(off) if off else "—",
            ]
        )
    return table


def open_loop_table(record: ScenarioRecord) -> Table:
    table = Table(
        [
            "configuration",
            "offered req/s",
            "sent req/s",
            "served req/s",
            "p50",
            "p90",
            "p99",
            "max ms",
            "errors",
        ]
    )
    opened = [m for m in record.measurements if m.mode == "open"]
    for m in sorted(opened, key=lambda m: (m.rate or 0.0, not is_off(m))):
        if m.error:
            table.rows.append([m.label, rps(m.rate), "—", "—", "—", "—", "—", "—", m.error])
            continue
        table.rows.append(
            [
                m.label,
                rps(m.rate),
                rps(m.result.get("achieved_rate_rps")),
                rps(m.throughput),
                ms(m.latency("p50")),
                ms(m.latency("p90")),
                ms(m.latency("p99")),
                ms(m.latency("max")),
                errors(m),
            ]
        )
    return table


def sweep_points(record: ScenarioRecord, key: str) -> tuple[int | None, list[Measurement]]:
    """Closed-loop measurements with batching on that differ from the reference only in ``key``.

    Returns the sweep's concurrency and its points sorted by ``key``.
    """
    reference = batching_reference(record)
    if reference is None:
        return None, []
    varied = [
        m
        for m in record.measurements
        if m.ok
        and m.mode == "closed"
        and m.config.get("batching")
        and m.config != reference
        and all(m.config.get(k) == v for k, v in reference.items() if k != key)
    ]
    if not varied:
        return None, []
    clients = varied[0].concurrency
    same = [
        m for m in record.measurements if m.ok and m.mode == "closed" and m.concurrency == clients
    ]
    points = [m for m in varied if m.concurrency == clients]
    points += [m for m in same if m.config == reference]
    return clients, sorted(points, key=lambda m: int(m.config.get(key) or 0))


def sweep_table(record: ScenarioRecord, key: str, heading: str) -> tuple[str, Table] | None:
    clients, points = sweep_points(record, key)
    if not points:
        return None
    off = next(
        (m for m in record.find("api", concurrency=clients, mode="closed") if m.ok and is_off(m)),
        None,
    )
    table = Table(
        [heading, "req/s", "p50", "p90", "p99", "max ms", "errors", "req/s ÷ off", "p99 ÷ off"]
    )
    for m in points:
        table.rows.append(
            [
                str(m.config.get(key)),
                rps(m.throughput),
                ms(m.latency("p50")),
                ms(m.latency("p90")),
                ms(m.latency("p99")),
                ms(m.latency("max")),
                errors(m),
                ratio(m.throughput, off.throughput if off else None),
                ratio(m.latency("p99"), off.latency("p99") if off else None),
            ]
        )
    return f"{clients} clients, closed loop", table


# -- the generator's ceiling ----------------------------------------------------------------------


def ceiling_table(record: ScenarioRecord) -> Table:
    table = Table(["clients", "req/s", "p50 ms", "p99 ms", "generator CPU", "saturated"])
    for m in sorted(record.measurements, key=lambda m: m.concurrency or 0):
        if not m.ok:
            continue
        table.rows.append(
            [
                str(m.concurrency),
                rps(m.throughput),
                ms(m.latency("p50")),
                ms(m.latency("p99")),
                f"{m.cpu.get(GENERATOR, m.result.get('generator_cpu', 0.0)):.2f} cores",
                "yes" if m.result.get("generator_saturated") else "no",
            ]
        )
    return table


def ceiling(record: ScenarioRecord | None) -> float | None:
    """The generator's highest measured throughput."""
    if record is None:
        return None
    values = [m.throughput for m in record.measurements if m.ok and m.throughput]
    return max(values) if values else None  # type: ignore[type-var]
