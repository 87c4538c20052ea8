"""Markdown sections of the WebSocket streams (3) and prediction cache (4) scenarios."""

from __future__ import annotations

from typing import Any

from benchmarks.bars import server_p50
from benchmarks.records import Measurement, ScenarioRecord
from benchmarks.tables import Table, cpu, errors, limit_table, ms, ratio, rps


def _lat(summary: dict[str, Any] | None, key: str) -> str:
    value = (summary or {}).get(f"{key}_ms")
    return ms(None if value is None else float(value))


def stream_errors(m: Measurement) -> str:
    """Error messages and early closes by kind (drops have their own column)."""
    parts = [f"{kind}×{n}" for kind, n in m.result.get("errors_by_kind", {}).items()]
    return ", ".join(parts) or "0"


def _streams(record: ScenarioRecord) -> list[Measurement]:
    return sorted(
        (m for m in record.find("api") if m.ok),
        key=lambda m: (m.concurrency or 0, m.config.get("round") or 0, m.label),
    )


def _streams_cell(m: Measurement) -> str:
    """``4``, or ``4 (round 2)`` when measured in rounds."""
    number = m.config.get("round")
    return f"{m.concurrency}" + (f" (round {number})" if number is not None else "")


def streams_table(record: ScenarioRecord) -> Table:
    """Per number of streams: offered and processed fps, drops, both latencies, CPU."""
    table = Table(
        [
            "streams",
            "offered fps",
            "processed fps",
            "fps per stream",
            "dropped / sent",
            "errors",
            "round trip p50 / p95 / p99 ms",
            "server p50 / p95 / p99 ms",
            "CPU cores",
        ]
    )
    for m in _streams(record):
        r = m.result
        per = " / ".join(f"{s['fps']:.1f}" for s in r.get("per_stream", []))
        server = r.get("server_latency")
        table.rows.append(
            [
                _streams_cell(m),
                rps(m.rate),
                f"{m.throughput or 0:.2f}",
                per,
                f"{r.get('dropped')} / {r.get('sent')}",
                stream_errors(m),
                f"{ms(m.latency('p50'))} / {ms(m.latency('p95'))} / {ms(m.latency('p99'))}",
                f"{_lat(server, 'p50')} / {_lat(server, 'p95')} / {_lat(server, 'p99')}",
                cpu(m),
            ]
        )
    return table


def per_stream_table(record: ScenarioRecord) -> Table:
    table = Table(
        [
            "streams",
            "stream",
            "sent",
            "processed",
            "fps",
            "dropped (server-reported + unanswered)",
            "round trip p50 / p95 ms",
            "server p50 / p95 ms",
        ]
    )
    for m in _streams(record):
        for s in m.result.get("per_stream", []):
            latency, server = s.get("latency"), s.get("server_latency")
            table.rows.append(
                [
                    _streams_cell(m),
                    str(s["stream"]),
                    str(s["sent"]),
                    str(s["processed"]),
                    f"{s['fps']:.2f}",
                    f"{s['dropped']} ({s['dropped_reported']} + {s['unanswered']})",
                    f"{_lat(latency, 'p50')} / {_lat(latency, 'p95')}",
                    f"{_lat(server, 'p50')} / {_lat(server, 'p95')}",
                ]
            )
    return table


def streams_section(record: ScenarioRecord) -> list[str]:
    lines: list[str] = []
    if record.checks:
        lines += ["**Checks**", ""]
        lines += [f"- **{c.status}**: {c.bar}. {c.detail}." for c in record.checks]
        lines.append("")
    lines += [
        "**Streams** (processed fps: the sum of the streams' result rates, each from its first "
        "result after the warm-up to its last before the planned end; dropped: measured frames "
        "sent without a result; round trip: from sending frame n to its result; server: the "
        "result's latency_ms; CPU: cores used in the window, by process; stolen: cores the "
        "hypervisor gave to other guests; other: cores used by processes outside the benchmark)",
        "",
        streams_table(record).markdown(),
        "",
        "**Per stream**",
        "",
        per_stream_table(record).markdown(),
        "",
    ]
    limit = limit_table(record, "images")
    if limit is not None:
        lines += [
            "**Limit: the model alone** (in-process ONNX Runtime, Triton's configuration; "
            "latency of one call; the last column uses the best processed fps; ★: each round's "
            "best; measured in rounds with the streams of each bar: the bars take each quiet "
            "round's streams over its own batch 1, or over the batch size with the best median, "
            "and use the median of those shares)",
            "",
            limit.markdown(),
            "",
        ]
    return lines


def _cache_points(record: ScenarioRecord) -> list[Measurement]:
    return sorted(
        record.find("api"),
        key=lambda m: (m.concurrency or 0, m.config.get("requests") != "miss"),
    )


def cache_table(record: ScenarioRecord) -> Table:
    """Misses and hits per concurrency: server time, client latency, X-Cache counts."""
    table = Table(
        [
            "clients",
            "requests",
            "req/s",
            "server p50 / p90 / p99 ms",
            "client p50 / p99 ms",
            "X-Cache",
            "errors",
            "hit ÷ miss server p50",
            "CPU cores",
        ],
        left=2,
    )
    for m in _cache_points(record):
        kind = str(m.config.get("requests"))
        if m.error:
            table.rows.append([str(m.concurrency), kind, "—", "—", "—", "—", m.error, "—", "—"])
            continue
        server = m.result.get("server_time")
        counts = ", ".join(f"{k}×{n}" for k, n in m.result.get("x_cache", {}).items()) or "—"
        miss = record.one("api", concurrency=m.concurrency, requests="miss")
        share = ratio(server_p50(m), server_p50(miss)) if kind == "hit" and miss is not None else ""
        table.rows.append(
            [
                str(m.concurrency),
                kind,
                rps(m.throughput),
                f"{_lat(server, 'p50')} / {_lat(server, 'p90')} / {_lat(server, 'p99')}",
                f"{ms(m.latency('p50'))} / {ms(m.latency('p99'))}",
                counts,
                errors(m),
                share,
                cpu(m),
            ]
        )
    return table


def cache_section(record: ScenarioRecord) -> list[str]:
    lines: list[str] = []
    if record.checks:
        lines += ["**Checks**", ""]
        lines += [f"- **{c.status}**: {c.bar}. {c.detail}." for c in record.checks]
        lines.append("")
    lines += [
        "**Hit vs miss** (server: the API's X-Process-Time, from the request's arrival to the "
        "start of its response; client: the generator's latency; closed loop)",
        "",
        cache_table(record).markdown(),
        "",
    ]
    return lines
