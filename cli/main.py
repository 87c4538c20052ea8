"""The ``tritongate`` command line.

    tritongate export newsgroups|yolos|all   build ONNX models into the model repository
    tritongate triton                        run the local tritonserver in the foreground
    tritongate serve                         the API, with a local tritonserver unless configured
    tritongate prestart                      wait for the database and Triton, apply migrations
    tritongate bench                         benchmark scenarios and reports (benchmarks/)

``bench`` exists where the benchmarks are installed (a checkout, ``make install``); the API
image has none of them. Heavy libraries (torch, transformers, scikit-learn) are imported only by
the commands that need them, so ``tritongate triton`` starts quickly.
"""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from serving.model_repository import MODEL_FILENAME, model_versions
from serving.settings import ServingSettings
from serving.specs import MODEL_SPECS

app = typer.Typer(help="TritonGate: GPU-optimized model serving.", no_args_is_help=True)
export_app = typer.Typer(help="Export the models to ONNX into the Triton model repository.")
app.add_typer(export_app, name="export")
console = Console(stderr=True)


def _bench_app() -> typer.Typer | None:
    """The ``bench`` commands, or None where the benchmarks are not installed."""
    try:
        from benchmarks.cli import bench_app
    except ModuleNotFoundError as error:
        if error.name != "benchmarks":
            raise
        return None
    return bench_app


if (bench_app := _bench_app()) is not None:
    app.add_typer(bench_app, name="bench")

RepositoryOption = Annotated[
    Path | None,
    typer.Option("--repository", help="Model repository (env TRITONGATE_MODEL_REPOSITORY)"),
]
VersionOption = Annotated[int, typer.Option(help="Model version directory to write.")]
SkipOption = Annotated[
    bool, typer.Option("--skip-existing", help="Do nothing for a model that has a version already.")
]


def _settings(repository: Path | None) -> ServingSettings:
    settings = ServingSettings()
    if repository is not None:
        settings = settings.model_copy(update={"model_repository": repository})
    return settings


def _log(message: str) -> None:
    console.print(f"[bold cyan]›[/] {message}", highlight=False)


def _already_exported(settings: ServingSettings, model: str) -> bool:
    """True if ``model``'s newest version exists and has the interface serving/specs.py declares
    (an export from before an interface change is exported again rather than kept)."""
    versions = model_versions(settings.model_repository / model)
    if not versions:
        return False
    mismatch = _interface_mismatch(settings.model_repository, model, versions[-1])
    if mismatch is not None:
        _log(
            f"{model}: version {versions[-1]} in {settings.model_repository} does not have the "
            f"current interface ({mismatch}); exporting again"
        )
        return False
    _log(f"{model}: version {versions[-1]} already in {settings.model_repository}, skipping")
    return True


def _interface_mismatch(repository: Path, model: str, version: int) -> str | None:
    """Why the exported graph's inputs and outputs differ from the spec, or None if they match."""
    import onnx
    from google.protobuf.message import DecodeError

    from export.repository import check_onnx_against_spec

    path = repository / model / str(version) / MODEL_FILENAME
    try:
        graph = onnx.load(str(path), load_external_data=False)
        check_onnx_against_spec(graph, MODEL_SPECS[model])
    except (OSError, ValueError, DecodeError) as error:
        return str(error)
    return None


def _fail(error: Exception) -> typer.Exit:
    console.print(f"[bold red]error:[/] {error}", highlight=False)
    return typer.Exit(code=1)


def _export_newsgroups(settings: ServingSettings, archive: Path | None, version: int) -> None:
    from export.errors import ExportError
    from export.newsgroups import export_newsgroups

    try:
        exported = export_newsgroups(
            settings.model_repository,
            archive=archive or settings.newsgroups_archive,
            data_home=settings.data_home,
            artifacts_dir=settings.artifacts_dir / "newsgroups",
            version=version,
            log=_log,
        )
    except ExportError as error:
        raise _fail(error) from error
    _log(f"newsgroups written to {exported.model_path}")


def _parity_images(settings: ServingSettings, scratch: Path) -> list[Path]:
    images = settings.parity_images()
    if images:
        return images
    from export.sample_images import write_sample_images

    _log(
        "no TRITONGATE_IMAGES_DIR configured: the YOLOS parity gate runs on generated "
        "sample images instead of real photos"
    )
    return write_sample_images(scratch)


def _export_yolos(
    settings: ServingSettings,
    weights: str | None,
    seed: int | None,
    tiny: bool,
    offline_fallback: bool,
    version: int,
) -> None:
    from export.errors import ExportError
    from export.yolos import export_yolos

    with tempfile.TemporaryDirectory(prefix="tritongate-parity-") as scratch:
        try:
            exported = export_yolos(
                settings.model_repository,
                weights=weights or settings.yolos_weights,
                random_init_seed=settings.yolos_seed if seed is None else seed,
                tiny=tiny,
                images=_parity_images(settings, Path(scratch)),
                version=version,
                offline_fallback_random_init=offline_fallback,
                log=_log,
            )
        except ExportError as error:
            raise _fail(error) from error
    _log(f"yolos written to {exported.model_path}")


ArchiveOption = Annotated[
    Path | None,
    typer.Option(
        "--archive",
        help="Local 20news-bydate.tar.gz (env TRITONGATE_NEWSGROUPS_ARCHIVE); "
        "without it the dataset is downloaded.",
    ),
]
WeightsOption = Annotated[
    str | None,
    typer.Option(
        "--yolos-weights",
        help="Hub id, local directory, or 'random-init' (env TRITONGATE_YOLOS_WEIGHTS).",
    ),
]
SeedOption = Annotated[int | None, typer.Option("--seed", help="Seed for random-init weights.")]
TinyOption = Annotated[bool, typer.Option(help="Tiny config (tests): same I/O, little compute.")]
FallbackOption = Annotated[
    bool,
    typer.Option(
        "--offline-fallback-random-init",
        help="If the hub is unreachable, export random weights (recorded as such) instead of "
        "failing.",
    ),
]


@export_app.command("newsgroups")
def export_newsgroups_command(
    repository: RepositoryOption = None,
    archive: ArchiveOption = None,
    version: VersionOption = 1,
    skip_existing: SkipOption = False,
) -> None:
    """Train the 20 Newsgroups classifier, convert it with skl2onnx, check parity."""
    settings = _settings(repository)
    if not (skip_existing and _already_exported(settings, "newsgroups")):
        _export_newsgroups(settings, archive, version)


@export_app.command("yolos")
def export_yolos_command(
    repository: RepositoryOption = None,
    weights: WeightsOption = None,
    seed: SeedOption = None,
    tiny: TinyOption = False,
    offline_fallback: FallbackOption = False,
    version: VersionOption = 1,
    skip_existing: SkipOption = False,
) -> None:
    """Export YOLOS with optimum-onnx and check parity against transformers."""
    settings = _settings(repository)
    if not (skip_existing and _already_exported(settings, "yolos")):
        _export_yolos(settings, weights, seed, tiny, offline_fallback, version)


@export_app.command("all")
def export_all_command(
    repository: RepositoryOption = None,
    archive: ArchiveOption = None,
    weights: WeightsOption = None,
    seed: SeedOption = None,
    offline_fallback: FallbackOption = False,
    version: VersionOption = 1,
    skip_existing: SkipOption = False,
) -> None:
    """Export both models."""
    settings = _settings(repository)
    if not (skip_existing and _already_exported(settings, "newsgroups")):
        _export_newsgroups(settings, archive, version)
    if not (skip_existing and _already_exported(settings, "yolos")):
        _export_yolos(settings, weights, seed, False, offline_fallback, version)


@app.command("triton")
def triton_command(
    repository: RepositoryOption = None,
    config_name: Annotated[
        str | None,
        typer.Option(help="Model config variant (configs/<name>.pbtxt); '' for config.pbtxt."),
    ] = None,
    grpc_port: Annotated[int | None, typer.Option(help="gRPC port (default: free)")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP port (default: free)")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Metrics port (default: free)")] = None,
) -> None:
    """Run the local tritonserver in the foreground until Ctrl-C."""
    from serving.launcher import LocalTriton, TritonLaunchError

    overrides: dict[str, object] = {
        "triton_grpc_port": grpc_port,
        "triton_http_port": http_port,
        "triton_metrics_port": metrics_port,
        "triton_config_name": config_name,
    }
    settings = _settings(repository)
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    _require_exports(settings)
    server = LocalTriton.from_settings(settings)
    with console.status("starting tritonserver and loading models…"):
        try:
            server.start()
        except TritonLaunchError as error:
            raise _fail(error) from error
    _log(f"tritonserver ready  gRPC {server.grpc_url}  HTTP {server.http_url}")
    _log(f"metrics {server.metrics_url}  log {server.log_path}")
    _log("Ctrl-C stops it")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = server.wait()
        raise _fail(RuntimeError(f"tritonserver exited with code {code}:\n{server.log_tail()}"))
    except KeyboardInterrupt:
        _log("stopping tritonserver…")
    finally:
        server.stop()


@app.command("serve")
def serve_command(
    repository: RepositoryOption = None,
    host: Annotated[str | None, typer.Option(help="API address (env TRITONGATE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="API port (env TRITONGATE_PORT)")] = None,
    workers: Annotated[
        int | None, typer.Option(help="API worker processes (env TRITONGATE_WORKERS)")
    ] = None,
) -> None:
    """Serve the API, with a local tritonserver unless TRITONGATE_TRITON_URL is set."""
    from api.config import Settings
    from api.platform.server import serve

    settings = Settings()
    overrides = {"model_repository": repository, "host": host, "port": port, "workers": workers}
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    _require_exports(settings)  # the API reads labels and provenance from the repository
    raise typer.Exit(code=serve(settings, log=_log))


@app.command("prestart")
def prestart_command() -> None:
    """Wait for the database (and TRITONGATE_TRITON_URL's Triton), then apply the migrations.

    Bounded by TRITONGATE_PRESTART_TIMEOUT_S; `serve` runs the same step before its workers.
    """
    import asyncio

    from sqlalchemy.exc import SQLAlchemyError

    from api.config import Settings
    from api.platform.logging_setup import configure_logging
    from api.platform.prestart import PrestartError, prestart

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(prestart(settings, log=_log))
    except PrestartError as error:
        raise _fail(error) from error
    except (SQLAlchemyError, OSError) as error:  # reachable, but the migration itself failed
        raise _fail(RuntimeError(f"migrating the database failed: {error}")) from error


def _require_exports(settings: ServingSettings) -> None:
    for model in ("newsgroups", "yolos"):
        if not model_versions(settings.model_repository / model):
            raise _fail(
                RuntimeError(
                    f"{settings.model_repository / model} has no exported model: run "
                    "`tritongate export all` (or `make run`) first"
                )
            )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    app()


if __name__ == "__main__":
    main()
