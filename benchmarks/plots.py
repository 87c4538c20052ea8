"""PNG plots of a report (matplotlib, Agg backend: no display needed).

* ``<scenario>-throughput.png``: requests per second against concurrency, one line per series,
  the limit baseline (batch 1 and best batch) as horizontal lines.
* ``<scenario>-latency.png``: p50, p90 and p99 against concurrency, one panel per percentile.
* ``batching.png``: batching on vs off (throughput, p99), open-loop latency against the offered
  rate, the ``max_delay`` and batch-size sweeps, and latency distributions on vs off.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.records import QUANTILES, Measurement, ScenarioRecord
from benchmarks.scenarios import SERIES_LABELS
from benchmarks.tables import (
    batching_reference,
    concurrency_levels,
    is_off,
    present_series,
    sweep_points,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

COLOURS = {
    "api": "#1f77b4",
    "triton_direct": "#2ca02c",
    "book": "#d62728",
    "noop": "#7f7f7f",
    "limit": "#9467bd",
}
DPI = 100


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plain_log(axes: Axes, which: str) -> None:
    """A log scale on ``which`` axis ("x" or "y") labelled with plain numbers (1, 10, 100…)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis = axes.xaxis if which == "x" else axes.yaxis
    (axes.set_xscale if which == "x" else axes.set_yscale)("log")
    axis.set_major_formatter(FuncFormatter(lambda value, _position: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def _log_clients_axis(axes: Axes, levels: list[int]) -> None:
    axes.set_xscale("log", base=2)
    axes.set_xticks(levels)
    axes.set_xticklabels([str(c) for c in levels])
    axes.set_xlabel("concurrent clients")
    axes.grid(True, which="both", alpha=0.3)


def _series_points(record: ScenarioRecord, series: str, stat: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for clients in concurrency_levels(record):
        m = record.one(series, concurrency=clients, mode="closed")
        value = None if m is None else (m.throughput if stat == "rps" else m.latency(stat))
        if value is not None and value > 0:
            xs.append(clients)
            ys.append(value)
    return xs, ys


def concurrency_plots(record: ScenarioRecord, directory: Path) -> list[Path]:
    """Throughput and latency percentiles against concurrency for a text/detection scenario."""
    levels = concurrency_levels(record)
    series = present_series(record)
    if not levels or not series:
        return []
    plt = _pyplot()
    paths = []

    figure, axes = plt.subplots(figsize=(8, 5))
    for name in series:
        xs, ys = _series_points(record, name, "rps")
        if xs:
            axes.plot(xs, ys, marker="o", label=SERIES_LABELS[name], color=COLOURS.get(name))
    limits = [m for m in record.find("limit") if m.ok and m.throughput]
    for m in limits:
        batch = m.config.get("batch_size")
        if batch == 1 or m.config.get("best"):
            style = ":" if batch == 1 else "--"
            axes.axhline(
                m.throughput or 0.0,
                linestyle=style,
                color=COLOURS["limit"],
                label=f"limit, batch {batch} (items/s)",
            )
    _log_clients_axis(axes, levels)
    _plain_log(axes, "y")
    axes.set_ylabel("successful requests per second")
    axes.set_title(f"{record.title}: throughput")
    axes.legend(fontsize="small")
    figure.tight_layout()
    paths.append(directory / f"{record.key}-throughput.png")
    figure.savefig(paths[-1], dpi=DPI)
    plt.close(figure)

    figure, panels = plt.subplots(1, 3, figsize=(14, 4.5), sharey=True)
    for axes, stat in zip(panels, ("p50", "p90", "p99"), strict=True):
        for name in series:
            xs, ys = _series_points(record, name, stat)
            if xs:
                axes.plot(xs, ys, marker="o", label=SERIES_LABELS[name], color=COLOURS.get(name))
        _log_clients_axis(axes, levels)
        _plain_log(axes, "y")
        axes.set_title(f"{stat} latency")
    panels[0].set_ylabel("latency (ms)")
    panels[0].legend(fontsize="small")
    figure.suptitle(f"{record.title}: latency percentiles")
    figure.tight_layout()
    paths.append(directory / f"{record.key}-latency.png")
    figure.savefig(paths[-1], dpi=DPI)
    plt.close(figure)
    return paths


def _closed(
    record: ScenarioRecord, off: bool, reference: dict[str, object] | None
) -> list[Measurement]:
    found = []
    for m in record.measurements:
        if not m.ok or m.mode != "closed":
            continue
        if (off and is_off(m)) or (not off and m.config == reference):
            found.append(m)
    return sorted(found, key=lambda m: m.concurrency or 0)


def _sweep_panel(axes: Axes, record: ScenarioRecord, key: str, xlabel: str) -> None:
    clients, points = sweep_points(record, key)
    if not points:
        axes.set_visible(False)
        return
    xs = [int(m.config.get(key) or 0) for m in points]
    axes.plot(xs, [m.throughput or 0.0 for m in points], marker="o", color=COLOURS["api"])
    axes.set_xlabel(xlabel)
    axes.set_ylabel("req/s", color=COLOURS["api"])
    twin = axes.twinx()
    twin.plot(xs, [m.latency("p99") or 0.0 for m in points], marker="s", color=COLOURS["book"])
    twin.set_ylabel("p99 ms", color=COLOURS["book"])
    axes.set_ylim(bottom=0)
    twin.set_ylim(bottom=0)
    if key == "max_batch_size":
        axes.set_xscale("log", base=2)
        axes.set_xticks(xs)
        axes.set_xticklabels([str(x) for x in xs])
    axes.set_title(f"{xlabel} sweep, {clients} clients")
    axes.grid(True, alpha=0.3)


def batching_plot(record: ScenarioRecord, directory: Path) -> list[Path]:
    """The batching scenario in one figure of six panels."""
    reference = batching_reference(record)
    on, off = _closed(record, False, reference), _closed(record, True, reference)
    if not on and not off:
        return []
    plt = _pyplot()
    figure, grid = plt.subplots(2, 3, figsize=(15, 8.5))
    levels = sorted({m.concurrency for m in on + off if m.concurrency})
    styles = (("batching on", on, COLOURS["api"]), ("batching off", off, COLOURS["noop"]))
    for axes, stat, title in (
        (grid[0][0], "rps", "throughput"),
        (grid[0][1], "p99", "p99 latency"),
    ):
        for label, points, colour in styles:
            values = [
                (m.concurrency, m.throughput if stat == "rps" else m.latency(stat)) for m in points
            ]
            values = [(c, v) for c, v in values if c and v]
            if values:
                axes.plot(*zip(*values, strict=True), marker="o", label=label, color=colour)
        _log_clients_axis(axes, levels)
        axes.set_ylim(bottom=0)
        axes.set_ylabel("req/s" if stat == "rps" else "ms")
        axes.set_title(f"closed loop: {title}")
        axes.legend(fontsize="small")

    axes = grid[0][2]
    opened = [m for m in record.measurements if m.ok and m.mode == "open"]
    for label, off_wanted, colour in (
        ("on", False, COLOURS["api"]),
        ("off", True, COLOURS["noop"]),
    ):
        points = sorted((m for m in opened if is_off(m) == off_wanted), key=lambda m: m.rate or 0.0)
        if points:
            rates = [m.rate or 0.0 for m in points]
            axes.plot(
                rates,
                [m.latency("p50") or 0.0 for m in points],
                marker="o",
                color=colour,
                label=f"{label} p50",
            )
            axes.plot(
                rates,
                [m.latency("p99") or 0.0 for m in points],
                marker="s",
                linestyle="--",
                color=colour,
                label=f"{label} p99",
            )
    axes.set_xlabel("offered rate (req/s, Poisson arrivals)")
    axes.set_ylabel("latency from scheduled send (ms)")
    _plain_log(axes, "y")
    axes.set_title("open loop: queueing")
    axes.grid(True, which="both", alpha=0.3)
    if opened:
        axes.legend(fontsize="small")

    _sweep_panel(grid[1][0], record, "max_delay_us", "max_delay (µs)")
    _sweep_panel(grid[1][1], record, "max_batch_size", "max_batch_size")

    axes = grid[1][2]
    top = max(levels) if levels else None
    for label, points, colour in styles:
        m = next((p for p in points if p.concurrency == top and p.quantiles_ms), None)
        if m is not None and m.quantiles_ms:
            axes.plot(m.quantiles_ms, [q / 100 for q in QUANTILES], color=colour, label=label)
    _plain_log(axes, "x")
    axes.set_xlabel("latency (ms)")
    axes.set_ylabel("fraction of requests")
    axes.set_title(f"latency distribution, {top} clients")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")

    figure.suptitle(record.title)
    figure.tight_layout()
    path = directory / "batching.png"
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return [path]
