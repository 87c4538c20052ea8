"""How long the API's server processes wait, in one place: ``tritongate serve`` (uvicorn or
gunicorn), ``api/gunicorn_conf.py`` and the deployment files (their stop grace periods are
checked against these by tests/unit/test_deploy_*.py).

Stopping, from the outside in: the orchestrator sends SIGTERM to ``tritongate serve``, which
sends it to the server process and waits ``STOP_TIMEOUT_S``; gunicorn passes it to every worker
and kills the ones still running after ``GRACEFUL_TIMEOUT_S``; inside a worker, uvicorn stops
accepting, lets in-flight requests finish for up to ``UVICORN_GRACEFUL_S`` and then runs the
app's lifespan shutdown (batchers drained, gRPC channel, database pool and Redis closed).
"""

from __future__ import annotations

UVICORN_GRACEFUL_S = 25
GRACEFUL_TIMEOUT_S = 30
STOP_TIMEOUT_S = GRACEFUL_TIMEOUT_S + 10
# A worker whose event loop has not reported to the gunicorn master for this long is killed and
# replaced (CPU work runs in threads, so only a stuck loop gets here).
WORKER_TIMEOUT_S = 60
# Idle keep-alive connections are closed after this long; behind a load balancer, set it above
# the balancer's idle timeout (GUNICORN_CMD_ARGS="--keep-alive 75") so it never reuses a closed one.
KEEPALIVE_S = 5
