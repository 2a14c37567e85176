"""SIGINT and SIGTERM as requests to stop at the next safe point, written once for the
trainer, the sweep and its parallel parent."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def caught(second_interrupts: bool = True) -> Iterator[list[int]]:
  """While active, SIGINT and SIGTERM append their number to the yielded list; with
  ``second_interrupts`` a second one raises KeyboardInterrupt (the user insists). The
  previous handlers come back on exit. Outside the main thread no handler can be
  installed and the list stays empty."""
  signums: list[int] = []

  def handler(signum, frame):  # pylint: disable=unused-argument
    if signums and second_interrupts:
      raise KeyboardInterrupt
    signums.append(signum)

  if threading.current_thread() is not threading.main_thread():
    yield signums
    return
  previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
  try:
    yield signums
  finally:
    for s, h in previous.items():
      signal.signal(s, h)
