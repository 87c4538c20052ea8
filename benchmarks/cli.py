"""``tritongate bench``: the benchmark runner's command line (mounted by ``cli/main.py``).

    tritongate bench [--scenario text|detection|streams|cache|batching|all] [--duration S]
                     [--warmup S] [--concurrency 1,4,16] [--rate R,R] [--rounds N] [--workers N]
                     [--url URL [--api-key KEY]] [--triton-url HOST:PORT] ...
    tritongate bench compare A B [--output FILE]
    tritongate bench render DIR

Heavy imports (the runner, torch for the book baseline) happen only when a command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

bench_app = typer.Typer(
    help="Benchmarks: scenarios against the API, Triton and the baselines; writes a report."
)
console = Console(stderr=True)


def _split(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def _numbers(text: str | None, kind: type[int] | type[float], option: str) -> tuple | None:
    if text is None:
        return None
    try:
        values = tuple(kind(part) for part in _split([text]))
    except ValueError as error:
        raise typer.BadParameter(f"{option}: comma-separated numbers, e.g. 1,4,16") from error
    if not values or any(v <= 0 for v in values):
        raise typer.BadParameter(f"{option}: positive numbers, e.g. 1,4,16")
    return values


@bench_app.callback(invoke_without_command=True)
def bench(
    context: typer.Context,
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario",
            "-s",
            help="text (1), detection (2), streams (3), cache (4), batching (5) or all; repeat "
            "or comma-separate. "
            "The generator's ceiling always runs. Default: all.",
        ),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Measured seconds per point (default: per scenario).")
    ] = None,
    warmup: Annotated[
        float | None, typer.Option(help="Warm-up seconds per point, not counted.")
    ] = None,
    concurrency: Annotated[
        str | None, typer.Option(help="Client counts for every scenario, e.g. 1,4,16,64.")
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(
            help="Open-loop rates (req/s) for the batching scenario; default: "
            "25%, 50% and 75% of the measured capacity."
        ),
    ] = None,
    rounds: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Rounds of the streams scenario: each bar's reference and its streams "
            "alternate this many times (default 6).",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes of the API and of each HTTP baseline.")
    ] = 1,
    url: Annotated[
        str | None,
        typer.Option(
            help="Measure this running deployment (http://host:port) instead of "
            "starting one; only what can be measured remotely runs."
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="TRITONGATE_BENCH_API_KEY",
            help="Credential sent to the API (env TRITONGATE_BENCH_API_KEY); never written "
            "to the report.",
        ),
    ] = None,
    api_key_header: Annotated[
        str,
        typer.Option(
            help="Header carrying --api-key (X-API-Key: an API key; Authorization: sends "
            "'Bearer KEY', for an access token)."
        ),
    ] = "X-API-Key",
    triton_url: Annotated[
        str | None,
        typer.Option(
            envvar="TRITONGATE_TRITON_URL",
            help="A running Triton's gRPC host:port (env TRITONGATE_TRITON_URL), e.g. a GPU "
            "Triton; without it a local tritonserver is started.",
        ),
    ] = None,
    repository: Annotated[
        Path | None, typer.Option(help="Model repository (env TRITONGATE_MODEL_REPOSITORY).")
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(help="Photos for detection (env TRITONGATE_IMAGES_DIR); else generated."),
    ] = None,
    book_joblib: Annotated[
        Path | None,
        typer.Option(help="The book's joblib file; default: the one the export recorded."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Write the report into exactly this directory.")
    ] = None,
    output_root: Annotated[
        Path | None,
        typer.Option(help="Parent of <date>-<machine>-<commit>/ (default benchmarks/results)."),
    ] = None,
    machine: Annotated[
        str | None, typer.Option(help="Machine name in the directory (default host-Ncpu).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Per-request timeout, seconds.")] = 30.0,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
) -> None:
    """Run benchmark scenarios and write JSON, Markdown and PNG plots."""
    if context.invoked_subcommand is not None:
        return
    from benchmarks.runner import DEFAULT_OUTPUT_ROOT, BenchOptions, run_benchmarks
    from serving.settings import ServingSettings

    settings = ServingSettings()
    options = BenchOptions(
        scenarios=tuple(_split(scenario)),
        duration=duration,
        warmup=warmup,
        concurrency=_numbers(concurrency, int, "--concurrency"),
        rates=_numbers(rate, float, "--rate"),
        rounds=rounds,
        workers=workers,
        url=url,
        api_key=api_key,
        api_key_header=api_key_header,
        triton_url=triton_url or None,
        repository=repository or settings.model_repository,
        config_name=settings.triton_config_name or None,
        work_dir=settings.work_dir,
        images_dir=images or settings.images_dir,
        book_joblib=book_joblib,
        output_root=output_root or DEFAULT_OUTPUT_ROOT,
        output_dir=output,
        machine_name=machine,
        timeout=timeout,
        progress=progress,
    )
    try:
        directory = run_benchmarks(options)
    except ValueError as error:
        console.print(f"[bold red]error:[/] {error}", highlight=False)
        raise typer.Exit(code=2) from error
    report = json.loads((directory / "report.json").read_text())
    for record in report["scenarios"]:
        for check in record["checks"]:
            console.print(f"[bold]{check['status']}[/] {check['detail']}", highlight=False)
    console.print(f"report: {directory / 'report.md'}", highlight=False)
    if report.get("interrupted"):
        raise typer.Exit(code=130)


@bench_app.command("compare")
def compare_command(
    first: Annotated[Path, typer.Argument(help="Report A (report.json or its directory).")],
    second: Annotated[Path, typer.Argument(help="Report B.")],
    output: Annotated[
        Path | None, typer.Option(help="Write the Markdown here instead of stdout.")
    ] = None,
) -> None:
    """Compare two reports: B ÷ A for every shared measurement, and within-run ratios."""
    from benchmarks.compare import compare_markdown, load

    text = compare_markdown(load(first), load(second))
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text)
        console.print(f"comparison: {output}", highlight=False)


@bench_app.command("render")
def render_command(
    directory: Annotated[Path, typer.Argument(help="A report directory (holding report.json).")],
) -> None:
    """Rewrite a report's Markdown and plots from its report.json."""
    from benchmarks.compare import load
    from benchmarks.report import write_report

    write_report(load(directory), directory)
    console.print(f"report: {directory / 'report.md'}", highlight=False)
