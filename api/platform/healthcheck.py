"""``python -m api.platform.healthcheck [PATH]``: exit 0 when the local API answers ``PATH`` with
200.

The container's HEALTHCHECK (the slim image has no curl): it asks ``127.0.0.1`` on
``TRITONGATE_PORT`` (default 8000) for ``/health/live`` unless told another path, with a short
timeout, and prints why it failed.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PATH = "/health/live"
TIMEOUT_S = 3.0


def check(path: str = DEFAULT_PATH, port: int | None = None) -> str | None:
    """``None`` when healthy, else the reason."""
    port = port or int(os.environ.get("TRITONGATE_PORT", "8000"))
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as reply:
            return None if reply.status == 200 else f"{url} answered {reply.status}"
    except urllib.error.HTTPError as error:
        return f"{url} answered {error.code}"
    except (urllib.error.URLError, OSError) as error:
        return f"{url} is unreachable: {error}"


def main(argv: list[str]) -> int:
    reason = check(argv[0] if argv else DEFAULT_PATH)
    if reason is not None:
        print(f"unhealthy: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
