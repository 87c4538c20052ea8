"""gunicorn's configuration for the API (``gunicorn -c python:api.platform.gunicorn_conf``), used by
``tritongate serve --workers N`` and, through it, by the containers.

Everything comes from the ``TRITONGATE_*`` settings (``serve`` passes its resolved settings to
the server process in the environment) and ``api/platform/timeouts.py``; gunicorn's own
``GUNICORN_CMD_ARGS`` still overrides any of it (e.g. ``--keep-alive 75`` behind a balancer).

* ``preload_app = False``: the app is built in each worker after the fork, so every worker opens
  its own gRPC channel, batchers, database pool and Redis client in its lifespan (a channel or an
  event loop created before ``fork`` is not safe to use in the child).
* ``logconfig_dict``: the master logs in the workers' format (``api/platform/logging_setup.py``);
  gunicorn's
  access log is off (query strings can carry tokens).
* ``child_exit``: a worker that exits leaves its metric files behind, and for ``livesum`` gauges
  (queue depth, open streams) its last values would keep counting; marking it dead stops that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import multiprocess

from api.config import Settings
from api.platform.logging_setup import logging_dict
from api.platform.timeouts import GRACEFUL_TIMEOUT_S, KEEPALIVE_S, WORKER_TIMEOUT_S

_settings = Settings()


def bind_address(host: str, port: int) -> str:
    """gunicorn's ``host:port``, with IPv6 addresses in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


wsgi_app = "api.main:app_from_environment()"
proc_name = "tritongate-api"
bind = [bind_address(_settings.host, _settings.port)]
workers = _settings.workers
worker_class = "api.platform.gunicorn_worker.TritonGateWorker"
preload_app = False
timeout = WORKER_TIMEOUT_S
graceful_timeout = GRACEFUL_TIMEOUT_S
keepalive = KEEPALIVE_S
# Workers are not recycled: each holds warm batchers, a model registry and a prediction cache.
max_requests = 0
# The workers' heartbeat files: in memory where it exists (a container's /tmp may be overlayfs,
# whose writes can stall a heartbeat long enough to get a healthy worker killed).
worker_tmp_dir = "/dev/shm" if Path("/dev/shm").is_dir() else None
accesslog = None
logconfig_dict = logging_dict(_settings.log_level, _settings.log_format)


def child_exit(server: Any, worker: Any) -> None:
    multiprocess.mark_process_dead(worker.pid)
