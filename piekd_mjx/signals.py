"""SIGINT and SIGTERM as requests to stop at the next safe point, written once for the
trainer, the sweep and its parallel parent."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# The lists of the active ``caught`` contexts, outermost first.
_ACTIVE: list[list[int]] = []


@contextlib.contextmanager
def caught(second_interrupts: bool = True) -> Iterator[list[int]]:
  """While active, SIGINT and SIGTERM append their number to the yielded list; with
  ``second_interrupts`` a second one raises KeyboardInterrupt (the user insists). The
  previous handlers come back on exit. Contexts nest: an inner list starts with what
  the one around it has caught (a sweep signalled while a run restores its checkpoint
  stops that run at its first chunk), and a signal reaches every active list. Outside
  the main thread no handler can be installed and the list catches nothing more."""
  signums: list[int] = list(_ACTIVE[-1]) if _ACTIVE else []

  def handler(signum, frame):  # pylint: disable=unused-argument
    if signums and second_interrupts:
      raise KeyboardInterrupt
    for active in _ACTIVE:
      active.append(signum)

  if threading.current_thread() is not threading.main_thread():
    yield signums
    return
  _ACTIVE.append(signums)  # before the handler: a signal in between reaches it too
  try:
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
      yield signums
    finally:
      for s, h in previous.items():
        signal.signal(s, h)
  finally:
    _ACTIVE[:] = [active for active in _ACTIVE if active is not signums]
