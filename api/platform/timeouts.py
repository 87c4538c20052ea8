"""How long the API's server processes wait, in one place: ``tritongate serve`` (uvicorn or
gunicorn), ``api/platform/gunicorn_conf.py`` and the deployment files (their stop grace periods are
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

# Slow clients (the defaults of TRITONGATE_BODY_TIMEOUT_S, TRITONGATE_HEADER_TIMEOUT_S and
# TRITONGATE_MAX_HEADER_BYTES; api/platform/body_limit.py, api/platform/transport.py). A request
# body must arrive
# within BODY_TIMEOUT_S of its headers: 60 s lets a 10 MiB upload through a ~1.5 Mbit/s uplink.
# A request head must be complete within HEADER_TIMEOUT_S of the connection (or of its first
# byte, on a kept-alive connection): heads come in one packet, and 10 s is 64 KiB at ~50 kbit/s.
BODY_TIMEOUT_S = 60.0
HEADER_TIMEOUT_S = 10.0
# ... and be at most this large: browsers send 0.5-2 KiB, big cookies and bearer tokens a few
# KiB more; nginx's default is 4 buffers of 8 KiB, Node's 16 KiB.
MAX_HEADER_BYTES = 64 * 1024
