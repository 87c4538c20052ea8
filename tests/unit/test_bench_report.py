"""benchmarks.report, tables and compare on a synthetic run: JSON, Markdown, PNGs, comparisons."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from benchmarks import tables
from benchmarks.compare import compare_markdown
from benchmarks.records import QUANTILES, RunRecord
from benchmarks.report import write_report
from cli.main import app
from tests.unit.benchmarks.synthetic import synthetic_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_report_files_are_complete(tmp_path: Path) -> None:
    run = synthetic_run()
    paths = write_report(run, tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    assert RunRecord.from_dict(data).to_dict() == data  # the JSON is the whole run
    assert (tmp_path / "report.json").stat().st_size < 1_000_000
    for name in ("text-throughput", "text-latency", "detection-throughput", "batching"):
        assert paths[name].read_bytes().startswith(PNG_SIGNATURE), name
    markdown = (tmp_path / "report.md").read_text()
    for heading in (
        "## Headline",
        "## 0. Load generator ceiling",
        "## 1. Text classification over REST",
        "## 2. Object detection over REST",
        "## 5. Front-end batching on vs off, max_delay and batch size",
        "**Open loop**",
        "**Sweep of max_delay** (64 clients, closed loop, batching on)",
        "**Sweep of the batch size (newsgroups max_batch_size)**",
        "| clients | API + Triton req/s | p50 / p99 ms | Triton direct req/s",
        "![batching](batching.png)",
    ):
        assert heading in markdown, heading
    assert "> a note" in markdown


def test_checks_are_stated_with_their_numbers(tmp_path: Path) -> None:
    write_report(synthetic_run(), tmp_path)
    markdown = (tmp_path / "report.md").read_text()
    throughput = next(line for line in markdown.splitlines() if "vs the book" in line)
    assert "**PASS**" in throughput and "vs book" in throughput and "(bar ≥ 2×)" in throughput
    overhead = next(line for line in markdown.splitlines() if "API overhead at 1 client" in line)
    assert "**PASS**" in overhead and "Triton direct p50 1.25 ms" in overhead


def test_headline_ratios_and_batching_tables() -> None:
    run = synthetic_run()
    text = run.scenario("text")
    assert text is not None
    headline = tables.headline_table(text)
    row64 = next(row for row in headline.rows if row[0] == "64")
    api_rps = float(row64[1].replace(",", ""))
    assert 3900 <= api_rps <= 4000  # 2 s at 4,000/s, the window ends with the last response
    assert row64[-3].endswith("×")  # API ÷ book
    batching = run.scenario("batching")
    assert batching is not None
    on_off = tables.on_off_table(batching)
    assert [row[0] for row in on_off.rows] == ["16", "64"]
    assert 1.95 <= float(on_off.rows[0][5].rstrip("×")) <= 2.05  # 3,000 vs 1,500 req/s
    _, delays = tables.sweep_points(batching, "max_delay_us")
    assert [m.config["max_delay_us"] for m in delays] == [0, 500, 2000, 5000]
    _, sizes = tables.sweep_points(batching, "max_batch_size")
    assert [m.config["max_batch_size"] for m in sizes] == [8, 32, 128]
    off = next(m for m in batching.measurements if m.config.get("batching") is False)
    assert tables.errors(off) == "503×1"


def test_quantiles_keep_the_latency_distribution() -> None:
    run = synthetic_run()
    text = run.scenario("text")
    assert text is not None
    m = text.one("api", concurrency=64)
    assert m is not None and m.quantiles_ms is not None
    assert len(m.quantiles_ms) == len(QUANTILES) and m.quantiles_ms == sorted(m.quantiles_ms)
    assert abs(m.quantiles_ms[QUANTILES.index(50)] - (m.latency("p50") or 0)) < 1e-3
    assert abs(m.quantiles_ms[QUANTILES.index(99)] - (m.latency("p99") or 0)) < 1e-3


def test_compare_two_runs() -> None:
    text = compare_markdown(synthetic_run(), synthetic_run(scale=2.0))
    api64 = next(line for line in text.splitlines() if line.startswith("| text | api | 64 clients"))
    assert "| 2.00× |" in api64
    book64 = next(
        line for line in text.splitlines() if line.startswith("| text | book | 64 clients")
    )
    assert "| 1.00× |" in book64
    within = next(line for line in text.splitlines() if line.startswith("| text | 64 | book |"))
    assert within.count("×") == 2


def test_cli_render_and_compare(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    write_report(synthetic_run(), first)
    write_report(synthetic_run(scale=1.5), second)
    (first / "report.md").unlink()
    runner = CliRunner()
    rendered = runner.invoke(app, ["bench", "render", str(first)])
    assert rendered.exit_code == 0, rendered.output
    assert (first / "report.md").exists()
    output = tmp_path / "comparison.md"
    compared = runner.invoke(
        app, ["bench", "compare", str(first), str(second), "--output", str(output)]
    )
    assert compared.exit_code == 0, compared.output
    assert "| 1.50× |" in output.read_text()


def test_cli_refuses_unknown_scenarios() -> None:
    result = CliRunner().invoke(app, ["bench", "--scenario", "6", "--no-progress"])
    assert result.exit_code == 2
    assert "unknown scenario '6'" in result.output
