"""Ctrl-C as a request, not an exception: the loop stops between steps, with a whole state to save.

A KeyboardInterrupt raised inside a jitted call may leave the donated state deleted and nothing valid
to checkpoint. While training, SIGINT only sets a flag the loop reads once per iteration; a second
Ctrl-C falls back to the previous handler and interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any


class StopRequest:
    """Context manager: `requested` turns True on the first SIGINT received inside it."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signal handlers live there only
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)  # a second Ctrl-C interrupts at once

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False
