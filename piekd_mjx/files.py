"""Files written whole or not at all, and the locks a process holds on a directory.

A file written with ``write_atomic`` is complete or absent, whatever kills the writer: the
text goes to a temporary file of the writer's own (so that processes writing the same
path do not share one), is synced, and replaces the file in one rename. A lock
(``lock``, ``is_locked``) is an exclusive ``flock`` on a file; it goes with the process
that holds it, however that process ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Iterator


def write_atomic(path: str, data: str | bytes) -> None:
  """Writes ``data`` (text as UTF-8, or bytes) to ``path`` through a temporary file and
  a rename."""
  tmp = f'{path}.{os.getpid()}.tmp'
  with open(tmp, 'wb') as f:
    f.write(data.encode('utf-8') if isinstance(data, str) else data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def is_locked(path: str) -> bool:
  """Whether another process holds the lock of the file ``path`` (False where the file
  does not exist)."""
  if not os.path.exists(path):
    return False
  with open(path, 'a', encoding='utf-8') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      return True
    fcntl.flock(f, fcntl.LOCK_UN)
  return False


@contextlib.contextmanager
def lock(path: str) -> Iterator[bool]:
  """Holds the lock of the file ``path`` (created if missing) while active; yields False,
  holding nothing, when another process has it."""
  with open(path, 'a', encoding='utf-8') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      yield False
      return
    try:
      yield True
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)
