"""Closing WebSocket streams with 1001 (going away) when the server is asked to stop.

uvicorn closes open WebSockets with 1012 as soon as it begins to shut down, before the app's
lifespan shutdown runs. So while the app runs, the process's SIGTERM/SIGINT handlers (uvicorn's
or gunicorn worker's) are wrapped: on a signal the streams are closed with 1001 first, then the
original handler runs and the server stops as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from api.inference.streaming import OpenStreams

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _resume(previous: Any, signum: int, frame: FrameType | None) -> None:
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def close_streams_on_stop(streams: OpenStreams) -> Callable[[], None]:
    """Install the wrapping handlers; returns a function restoring the previous ones.

    Outside the main thread (e.g. a test client running the app in a worker thread) signals
    cannot be handled, and nothing is installed.
    """
    loop = asyncio.get_running_loop()
    try:
        previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

        def handler(signum: int, frame: FrameType | None) -> None:
            async def close_then_stop() -> None:
                count = len(streams)
                await streams.close_all()
                if count:
                    logger.info("closed %d stream(s) with 1001 before stopping", count)
                _resume(previous[signum], signum, frame)

            loop.call_soon_threadsafe(lambda: loop.create_task(close_then_stop()))

        for sig in STOP_SIGNALS:
            signal.signal(sig, handler)
    except ValueError:  # not the main thread
        return lambda: None

    def restore() -> None:
        for sig, handler_before in previous.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler_before)

    return restore
