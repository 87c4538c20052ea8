"""Compare two reports: the same measurement in run A and run B, side by side.

Measurements are matched by scenario, series, load (closed loop at the same concurrency, open
loop at the same rate, in-process at the same batch size) and configuration. For two
configurations on one machine the B ÷ A column is the effect of the change; for two machines,
compare the *ratios within each run* (API ÷ book, API ÷ Triton direct), which the second table
lists, rather than absolute figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.records import Measurement, RunRecord
from benchmarks.tables import Table, ms, ratio, rps


def load(path: Path) -> RunRecord:
    """A run from ``report.json`` (or a directory holding one)."""
    if path.is_dir():
        path = path / "report.json"
    return RunRecord.from_dict(json.loads(path.read_text()))


def _key(m: Measurement) -> tuple[Any, ...]:
    load_key: Any = m.concurrency if m.mode == "closed" else m.rate
    if m.mode == "in-process":
        load_key = m.config.get("batch_size")
    config = {k: v for k, v in m.config.items() if k != "best"}
    return (m.scenario, m.series, m.mode, load_key, json.dumps(config, sort_keys=True))


def _load_text(m: Measurement) -> str:
    if m.mode == "closed":
        return f"{m.concurrency} clients"
    if m.mode == "open":
        return f"{rps(m.rate)} req/s offered"
    return f"batch {m.config.get('batch_size')}"


def _title(run: RunRecord) -> str:
    git = run.machine.get("git", {})
    return f"{run.machine.get('name')} · {git.get('short_commit')} · {run.created}"


def matched_table(a: RunRecord, b: RunRecord) -> Table:
    """Every measurement present in both runs."""
    table = Table(
        [
            "scenario",
            "series",
            "load",
            "A req/s",
            "B req/s",
            "B ÷ A",
            "A p50",
            "B p50",
            "A p99",
            "B p99",
            "B ÷ A p99",
        ],
        left=3,
    )
    in_b = {_key(m): m for record in b.scenarios for m in record.measurements if m.ok}
    for record in a.scenarios:
        for m in record.measurements:
            other = in_b.get(_key(m))
            if not m.ok or other is None:
                continue
            table.rows.append(
                [
                    record.key,
                    m.label if record.key == "batching" else m.series,
                    _load_text(m),
                    rps(m.throughput),
                    rps(other.throughput),
                    ratio(other.throughput, m.throughput),
                    ms(m.latency("p50")),
                    ms(other.latency("p50")),
                    ms(m.latency("p99")),
                    ms(other.latency("p99")),
                    ratio(other.latency("p99"), m.latency("p99")),
                ]
            )
    return table


def within_run_ratios(a: RunRecord, b: RunRecord) -> Table:
    """API ÷ baseline throughput at each concurrency, in each run (machine-independent view)."""
    table = Table(
        ["scenario", "clients", "baseline", "A: API ÷ baseline", "B: API ÷ baseline"], left=3
    )
    for record_a in a.scenarios:
        record_b = b.scenario(record_a.key)
        if record_b is None:
            continue
        levels = sorted(
            {m.concurrency for m in record_a.find("api", mode="closed") if m.concurrency}
        )
        for baseline in ("book", "triton_direct", "noop"):
            for clients in levels:
                cells = []
                for record in (record_a, record_b):
                    api = record.one("api", concurrency=clients)
                    other = record.one(baseline, concurrency=clients)
                    cells.append(
                        ratio(api.throughput if api else None, other.throughput if other else None)
                    )
                if any(cell != "—" for cell in cells):
                    table.rows.append([record_a.key, str(clients), baseline, *cells])
    return table


def compare_markdown(a: RunRecord, b: RunRecord) -> str:
    """Both tables as a Markdown document."""
    lines = [
        "# TritonGate benchmark comparison",
        "",
        f"- A: {_title(a)}",
        f"- B: {_title(b)}",
        "",
        "## Same measurement in both runs",
        "",
        matched_table(a, b).markdown(),
        "",
        "## Ratios within each run",
        "",
        within_run_ratios(a, b).markdown(),
    ]
    return "\n".join(lines) + "\n"
