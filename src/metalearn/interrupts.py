"""Stopping a training run without losing it: SIGINT and SIGTERM as exceptions.

A notebook cell that is stopped raises ``KeyboardInterrupt`` (SIGINT); a
process that is terminated (a Colab session ending, ``kill``) receives SIGTERM.
While :func:`metalearn.training.train` runs, both arrive as exceptions at a
point where the loop can write a checkpoint of the last completed step; inside
:meth:`Interrupts.deferred` (while an update is being applied) they are held
until the update is complete, so a checkpoint never holds half an update.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class TrainingInterrupted(KeyboardInterrupt):
    """Raised in :func:`train` when the process receives SIGTERM."""


class Interrupts:
    """Turn SIGINT and SIGTERM into exceptions, except inside :meth:`deferred`.

    Installed only in the main thread (the only place Python runs handlers),
    and only over handlers that Python installed and that do not ignore the
    signal; the previous handlers are restored on exit.
    """

    def __init__(self) -> None:
        self.previous: dict[int, Any] = {}
        self.deferring = False
        self.pending: BaseException | None = None

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(signum)
            if handler is None or handler == signal.SIG_IGN:
                continue
            self.previous[signum] = handler
            signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if signum == signal.SIGINT:
            exc: BaseException = KeyboardInterrupt()
        else:
            exc = TrainingInterrupted(f"received {signal.Signals(signum).name}")
        if self.deferring:
            self.pending = exc
            return
        raise exc

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold a signal that arrives in this block until the block has finished."""
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        if self.pending is not None:
            exc, self.pending = self.pending, None
            raise exc
