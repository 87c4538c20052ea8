"""What ``tritongate serve`` tells the operator (api.platform.server)."""

from __future__ import annotations

from api.config import Settings
from api.platform.server import ready_message


def test_the_ready_message_points_at_the_docs_only_when_they_are_served() -> None:
    served = Settings(_env_file=None, docs_enabled=True)  # type: ignore[call-arg]
    hidden = Settings(_env_file=None, docs_enabled=False)  # type: ignore[call-arg]
    url = "http://127.0.0.1:8000"
    assert ready_message(url, served.docs_available) == (
        "TritonGate API ready: http://127.0.0.1:8000  (docs http://127.0.0.1:8000/docs); "
        "Ctrl-C stops"
    )
    assert ready_message(url, hidden.docs_available) == (
        "TritonGate API ready: http://127.0.0.1:8000; Ctrl-C stops"
    )
    assert "/docs" not in ready_message(url, hidden.docs_available)
