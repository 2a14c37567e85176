"""What a run prints: progress lines to stdout, warnings to stderr, both into ``run.log``.

A run's lines also go to the ``run.log`` of each run directory opened, with the time;
a line about one run of a group goes to that run's log only. A process that is not
the primary of several prints nothing (``Quiet``).
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import NoReturn, TextIO

from piekd_mjx.rundir import LOG_FILE


class Output:
  """Progress lines to ``out``, warnings to ``err``, both also to the log files of the
  run directories opened (a line for one run only goes to its own with ``only``)."""

  def __init__(self, out: TextIO, err: TextIO):
    self._out, self._err, self._files = out, err, []

  def open(self, run_dir: str) -> None:
    self._files.append(open(os.path.join(run_dir, LOG_FILE), 'a', encoding='utf-8'))

  def log(self, message: str, only: int | None = None) -> None:
    print(message, file=self._out, flush=True)
    self._record(message, only)

  def warn(self, message: str, only: int | None = None) -> None:
    print(f'warning: {message}', file=self._err, flush=True)
    self._record(f'warning: {message}', only)

  def _record(self, line: str, only: int | None) -> None:
    for i, file in enumerate(self._files):
      if only is None or i == only:
        file.write(f'{time.strftime("%Y-%m-%d %H:%M:%S")}  {line}\n')
        file.flush()

  def close(self) -> None:
    for file in self._files:
      file.close()


class Quiet(Output):
  """The ``Output`` of a process that prints and writes nothing."""

  def __init__(self):
    super().__init__(None, None)  # type: ignore[arg-type]

  def open(self, run_dir: str) -> None:
    del run_dir

  def log(self, message: str, only: int | None = None) -> None:
    del message, only

  def warn(self, message: str, only: int | None = None) -> None:
    del message, only


def hms(seconds: float | None) -> str:
  """``seconds`` as h:mm:ss ('?' when unknown or not finite)."""
  if seconds is None or not math.isfinite(seconds):
    return '?'
  seconds = int(seconds)
  return f'{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


# The exit codes of the command lines: bad input (one line, nothing done or lost), and a
# run that became non-finite.
EXIT_USAGE, EXIT_NONFINITE = 2, 3


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
  """Ends a command line with ``error: message`` on stderr and the exit code ``code``."""
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(code)
