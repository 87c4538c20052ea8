"""gunicorn settings for `tritongate serve --workers N` (`-c python:api.gunicorn_conf`).

* ``logconfig_dict``: the master logs in the workers' format (``api/logging_setup.py``), from the
  same ``TRITONGATE_LOG_*`` variables ``tritongate serve`` passes to it; its access log is off.
* ``child_exit``: a worker that exits leaves its metric files behind, and for ``livesum`` gauges
  (queue depth, open streams) its last values would keep counting; marking it dead stops that.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess

from api.config import Settings
from api.logging_setup import logging_dict

_settings = Settings()
logconfig_dict = logging_dict(_settings.log_level, _settings.log_format)


def child_exit(server: Any, worker: Any) -> None:
    multiprocess.mark_process_dead(worker.pid)
