"""api/platform/gunicorn_conf.py as gunicorn reads it: everything from the TRITONGATE_* settings, no
preload, the uvicorn worker class, and stop timeouts that nest (uvicorn < gunicorn < serve)."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest
from gunicorn.util import load_class

from api.platform import timeouts
from api.platform.gunicorn_worker import TritonGateWorker
from api.platform.server import api_command


def _config(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    import api.platform.gunicorn_conf

    return importlib.reload(api.platform.gunicorn_conf)


def test_settings_drive_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(
        monkeypatch, TRITONGATE_WORKERS="3", TRITONGATE_HOST="0.0.0.0", TRITONGATE_PORT="9001"
    )
    assert config.workers == 3
    assert config.bind == ["0.0.0.0:9001"]
    assert config.preload_app is False
    assert config.wsgi_app == "api.main:app_from_environment()"
    assert load_class(config.worker_class) is TritonGateWorker
    assert config.accesslog is None and config.max_requests == 0
    assert config.graceful_timeout == timeouts.GRACEFUL_TIMEOUT_S
    assert config.timeout == timeouts.WORKER_TIMEOUT_S


def test_ipv6_addresses_are_bracketed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _config(monkeypatch, TRITONGATE_HOST="::", TRITONGATE_PORT="8000").bind == ["[::]:8000"]


def test_the_worker_stops_in_flight_requests_before_gunicorn_kills_it() -> None:
    assert TritonGateWorker.CONFIG_KWARGS["timeout_graceful_shutdown"] == (
        timeouts.UVICORN_GRACEFUL_S
    )
    assert timeouts.UVICORN_GRACEFUL_S < timeouts.GRACEFUL_TIMEOUT_S < timeouts.STOP_TIMEOUT_S


def test_serve_runs_gunicorn_with_this_configuration_only() -> None:
    from api.config import Settings

    command = api_command(Settings(_env_file=None, workers=2))  # type: ignore[call-arg]
    assert command[1:] == ["-m", "gunicorn", "--config=python:api.platform.gunicorn_conf"]


def test_one_worker_and_gunicorn_workers_run_with_the_same_uvicorn_options() -> None:
    import click
    from uvicorn.main import main as uvicorn_main

    from api.config import Settings
    from api.platform.uvicorn_options import UVICORN_OPTIONS

    command = api_command(Settings(_env_file=None, workers=1))  # type: ignore[call-arg]
    assert command[1:3] == ["-m", "uvicorn"]
    # uvicorn's own command line parses the flags back into the same options.
    context = uvicorn_main.make_context("uvicorn", command[3:])
    assert isinstance(context, click.Context)
    for name, value in UVICORN_OPTIONS.items():
        assert context.params[name] == value, name
    assert TritonGateWorker.CONFIG_KWARGS == UVICORN_OPTIONS
    assert UVICORN_OPTIONS["ws_per_message_deflate"] is False
