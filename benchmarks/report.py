"""A run's report: ``report.json`` (every figure), ``report.md`` (tables) and PNG plots.

The JSON holds summaries, never raw samples: each measurement keeps its percentiles 0..100 and
99.9 (enough to redraw its latency distribution), so a report stays well under a megabyte.
The Markdown opens with the machine, the configuration and the caveats, then a **Headline**
section (the pass/fail checks and the side-by-side tables of the REST scenarios), then one
section per scenario with every figure, the ratios to the baselines and the plots.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks import tables, views
from benchmarks.machine import describe
from benchmarks.plots import batching_plot, concurrency_plots
from benchmarks.records import RunRecord, ScenarioRecord
from benchmarks.scenarios import SCENARIOS

JSON_NAME = "report.json"
MARKDOWN_NAME = "report.md"


def write_report(run: RunRecord, directory: Path) -> dict[str, Path]:
    """Write the JSON, the plots and the Markdown into ``directory``; their paths by kind."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / JSON_NAME
    json_path.write_text(json.dumps(run.to_dict(), indent=1, ensure_ascii=False) + "\n")
    plots: dict[str, list[Path]] = {}
    for record in run.scenarios:
        view = _view(record)
        if view == "concurrency":
            plots[record.key] = concurrency_plots(record, directory)
        elif view == "batching":
            plots[record.key] = batching_plot(record, directory)
    markdown_path = directory / MARKDOWN_NAME
    markdown_path.write_text(render_markdown(run, plots))
    return {"json": json_path, "markdown": markdown_path} | {
        path.stem: path for paths in plots.values() for path in paths
    }


def _view(record: ScenarioRecord) -> str:
    scenario = SCENARIOS.get(record.key)
    return scenario.view if scenario is not None else "concurrency"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def _header(run: RunRecord) -> list[str]:
    machine, config = run.machine, run.configuration
    git = machine.get("git", {})
    commit = git.get("short_commit") or "unknown commit"
    if git.get("dirty"):
        commit += " + uncommitted changes"
    triton = (config.get("triton") or {}).get("server") or {}
    versions = machine.get("packages", {})
    stack = ", ".join(
        f"{name} {versions[name]}"
        for name in ("fastapi", "uvicorn", "tritonclient", "onnxruntime", "torch", "scikit-learn")
        if name in versions
    )
    api = config.get("api_default", {})
    batching = (
        f"front-end batching on (max delay {api.get('max_delay_us')} µs)"
        if api.get("batching")
        else "front-end batching off"
    )
    lines = [
        "# TritonGate benchmark report",
        "",
        f"**{run.created}** · machine **{machine.get('name')}** · commit **{commit}** · "
        f"run time {_duration(run.elapsed_s)}" + (" · **interrupted**" if run.interrupted else ""),
        "",
        f"- Machine: {describe(machine)}; {machine.get('os')}; Python {machine.get('python')}; "
        f"load average at start {machine.get('load_average_at_start')}",
        f"- Software: tritonserver {triton.get('version', 'n/a')}; {stack}",
        f"- Setup: {config.get('mode')}; {config.get('workers')} worker process(es) for the API "
        f"and for every HTTP baseline; API {batching}; API authentication: "
        f"{config.get('api_auth')}; prediction cache: {config.get('api_cache')}; "
        "Triton model configs "
        f"`{(config.get('triton') or {}).get('config_name') or 'config.pbtxt'}`",
        "- Windows (warm-up excluded): "
        + "; ".join(
            f"{key} {w['warmup_s']:g} s warm-up + {w['duration_s']:g} s"
            for key, w in config.get("windows", {}).items()
        ),
        "",
    ]
    for note in run.notes:
        lines += [f"> {note}", ">"]
    if run.notes:
        lines[-1] = ""
    return lines


def _headline(run: RunRecord) -> list[str]:
    lines = ["## Headline", ""]
    checks = [check for record in run.scenarios for check in record.checks]
    if checks:
        lines += [tables.check_rows(checks).markdown(), ""]
    for record in run.scenarios:
        view = _view(record)
        if view == "concurrency" and record.measurements:
            lines += [
                f"**{record.number}. {record.title}** (successful req/s; latency p50 / p99 in "
                "ms; ratios are throughput)",
                "",
                tables.headline_table(record).markdown(),
                "",
            ]
        elif view == "streams" and record.find("api"):
            lines += [
                f"**{record.number}. {record.title}**",
                "",
                views.streams_table(record).markdown(),
                "",
            ]
        elif view == "cache" and record.measurements:
            lines += [
                f"**{record.number}. {record.title}**",
                "",
                views.cache_table(record).markdown(),
                "",
            ]
    return lines


def _ceiling_section(record: ScenarioRecord, run: RunRecord) -> list[str]:
    lines = [tables.ceiling_table(record).markdown(), ""]
    ceiling = tables.ceiling(record)
    fastest = max(
        (
            (m.throughput or 0.0, m)
            for other in run.scenarios
            if other.key != record.key
            for m in other.measurements
            if m.ok and m.mode != "in-process" and not m.result.get("url", "").startswith("grpc")
        ),
        default=None,
        key=lambda item: item[0],
    )
    if ceiling and fastest is not None:
        value, m = fastest
        lines += [
            f"The fastest HTTP target of this run ({m.label}, {m.concurrency} clients: "
            f"{tables.rps(value)} req/s) reached {value / ceiling:.0%} of the generator's "
            "ceiling.",
            "",
        ]
    return lines


def _concurrency_section(record: ScenarioRecord, plots: list[Path]) -> list[str]:
    lines: list[str] = []
    if record.checks:
        lines += ["**Checks**", ""]
        lines += [f"- **{c.status}**: {c.bar}. {c.detail}." for c in record.checks]
        lines.append("")
    lines += ["**All figures** (latency in ms; CPU: cores used in the window, by process)", ""]
    lines += [tables.figures_table(record).markdown(), ""]
    unit = "images" if record.key == "detection" else "documents"
    limit = tables.limit_table(record, unit)
    if limit is not None:
        lines += [
            "**Limit: the model alone** (in-process ONNX Runtime, Triton's configuration; "
            "latency of one call)",
            "",
            limit.markdown(),
            "",
        ]
    pre = tables.preprocess_line(record)
    if pre:
        lines += [pre, ""]
    lines += [f"![{path.stem}]({path.name})" for path in plots]
    return [*lines, ""] if plots else lines


def _batching_section(record: ScenarioRecord, plots: list[Path]) -> list[str]:
    lines = [
        "**Batching on vs off** (closed loop; off = every request sent to Triton alone, "
        "Triton's dynamic batcher still merges them)",
        "",
        tables.on_off_table(record).markdown(),
        "",
    ]
    opened = tables.open_loop_table(record)
    if opened.rows:
        lines += [
            "**Open loop** (Poisson arrivals at a fixed rate; latency from each request's "
            "scheduled time, so queueing shows)",
            "",
            opened.markdown(),
            "",
        ]
    for key, heading, title in (
        ("max_delay_us", "max_delay µs", "Sweep of max_delay"),
        ("max_batch_size", "max_batch_size", "Sweep of the batch size (newsgroups max_batch_size)"),
    ):
        sweep = tables.sweep_table(record, key, heading)
        if sweep is not None:
            where, table = sweep
            lines += [f"**{title}** ({where}, batching on)", "", table.markdown(), ""]
    lines += [f"![{path.stem}]({path.name})" for path in plots]
    return [*lines, ""] if plots else lines


def _configuration(run: RunRecord) -> list[str]:
    config = run.configuration
    lines = ["## Configuration and inputs", ""]
    options = config.get("options", {})
    lines.append("- Options: " + ", ".join(f"{k}={v}" for k, v in options.items() if v is not None))
    for model, figures in ((config.get("triton") or {}).get("models") or {}).items():
        lines.append(f"- Triton `{model}`: `{json.dumps(figures, sort_keys=True)}`")
    env = config.get("environment") or {}
    if env:
        lines.append("- Environment: " + ", ".join(f"`{k}={v}`" for k, v in env.items()))
    inputs = run.inputs
    texts: dict[str, Any] | None = inputs.get("texts")
    if texts:
        lines.append(
            f"- Texts: {texts.get('count')} documents ({texts.get('kind')}), mean "
            f"{texts.get('chars_mean')} characters, median {texts.get('chars_median')}, max "
            f"{texts.get('chars_max')}"
        )
    images: dict[str, Any] | None = inputs.get("images")
    if images:
        sizes = ", ".join(
            f"{i['name']} {i['size'][0]}×{i['size'][1]}" for i in images.get("images", [])
        )
        lines.append(f"- Images: {images.get('count')} ({images.get('kind')}): {sizes}")
    versions = run.machine.get("packages", {})
    lines.append("- Packages: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    git = run.machine.get("git", {})
    lines.append(f"- Commit: {git.get('commit')} ({git.get('branch')}), dirty: {git.get('dirty')}")
    return [*lines, ""]


def render_markdown(run: RunRecord, plots: dict[str, list[Path]]) -> str:
    lines = _header(run) + _headline(run)
    for record in run.scenarios:
        lines += [f"## {record.number}. {record.title}", "", record.description, ""]
        view = _view(record)
        if view == "ceiling":
            lines += _ceiling_section(record, run)
        elif view == "batching":
            lines += _batching_section(record, plots.get(record.key, []))
        elif view == "streams":
            lines += views.streams_section(record)
        elif view == "cache":
            lines += views.cache_section(record)
        else:
            lines += _concurrency_section(record, plots.get(record.key, []))
        if record.skipped:
            lines += ["**Skipped**", ""] + [f"- {reason}" for reason in record.skipped] + [""]
        failed = [m for m in record.measurements if m.error]
        if record.errors or failed:
            lines += ["**Errors**", ""]
            lines += [f"- {message}" for message in record.errors]
            lines += [f"- {m.label}, {m.concurrency or m.rate or ''}: {m.error}" for m in failed]
            lines.append("")
    lines += _configuration(run)
    return "\n".join(lines).rstrip() + "\n"
