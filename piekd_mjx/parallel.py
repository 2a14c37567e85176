"""Several groups of a sweep at once, each in a process of its own (``--parallel_groups``).

Groups that a step's latency bounds (small batches of environments, one after another)
leave an accelerator mostly idle; N processes, each training one group at a time with
1/N of the device's memory, fill it. The sweep (the parent) plans as it does alone,
with 1/N of the free memory per group, then starts a child process per group, at most N
at once, in the plan's order: ``python -m piekd_mjx.parallel`` reads its group from
standard input and trains it with ``dispatch.train_group``, the serial sweep's own code,
so each run keeps its lock, its exact resume and its records.

Signals: each child leads a session of its own, so a terminal's Ctrl-C reaches the
parent alone, which passes every SIGINT or SIGTERM it gets on to the children (the first
stops each at its next checkpoint, a second at once, as in a sweep alone) and starts no
more groups. A child dies with its parent (Linux's parent-death signal, SIGKILL), so a
parent killed by SIGKILL leaves no process behind; the same command resumes every group.
The parent's lines and the children's (each prefixed with its group's ``[n/N]``) share
the console.

Exit codes as the sweep's, and 1 when a child ended without one of them (killed, or
crashed; its stderr says why).
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Sequence, TextIO

from piekd_mjx import config as config_lib
from piekd_mjx import console
from piekd_mjx import dispatch
from piekd_mjx import jax_setup
from piekd_mjx import plan
from piekd_mjx import rootdir
from piekd_mjx import signals
from piekd_mjx import trainers as trainers_lib
from piekd_mjx.resources import UsageError

EXIT_BUSY = 75  # a child's group was held by another sweep (EX_TEMPFAIL)
EXIT_CRASHED = 1
# What JAX gives a process of a GPU when XLA_PYTHON_CLIENT_MEM_FRACTION is unset.
JAX_MEMORY_FRACTION = 0.75
_POLL_SECONDS = 0.1


def group_to_json(group: plan.Group) -> dict[str, Any]:
  """``group`` as JSON (the child's standard input)."""
  return {'directory': group.directory, 'split': group.split,
          'runs': [{**dataclasses.asdict(s), 'config': dataclasses.asdict(s.config)}
                   for s in group.runs]}


def group_from_json(value: dict[str, Any]) -> plan.Group:
  """The ``plan.Group`` of ``group_to_json``."""
  runs = tuple(rootdir.RunStatus(**{**r, 'config': config_lib.from_dict(r['config'])})
               for r in value['runs'])
  return plan.Group(runs, value['directory'], value['split'])


def child_environment(count: int, environ=os.environ) -> dict[str, str]:
  """The environment of a child of ``count``: its share of a GPU's memory (JAX's
  fraction, or the one given, over ``count``); a CPU ignores it."""
  fraction = float(environ.get('XLA_PYTHON_CLIENT_MEM_FRACTION', JAX_MEMORY_FRACTION))
  return {**environ, 'XLA_PYTHON_CLIENT_MEM_FRACTION': f'{fraction / count:.4f}'}


def parent_environment(environ=os.environ) -> None:
  """Makes this process (the parent) hold no device memory it does not use, so that its
  children get theirs: no preallocation, and memory freed as soon as its arrays are.
  Must run before JAX starts a backend."""
  environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  environ.setdefault('XLA_PYTHON_CLIENT_ALLOCATOR', 'platform')


class _Relay:
  """Copies a child's lines to the parent's stdout or stderr, each with a prefix."""

  _lock = threading.Lock()

  def __init__(self, source: TextIO, target: TextIO, prefix: str):
    self._thread = threading.Thread(target=self._copy, args=(source, target, prefix),
                                    daemon=True)
    self._thread.start()

  def _copy(self, source: TextIO, target: TextIO, prefix: str) -> None:
    for line in source:
      with self._lock:
        target.write(prefix + line)
        target.flush()

  def join(self) -> None:
    self._thread.join()


@dataclasses.dataclass
class _Child:
  number: int
  group: plan.Group
  process: subprocess.Popen
  relays: tuple[_Relay, _Relay]


def _start(number: int, total: int, group: plan.Group, keep: str, jax_cache_dir: str,
           command_buffers: bool, count: int) -> _Child:
  """A child process training ``group``; started from the main thread (a child's
  parent-death signal follows the thread that forked it)."""
  process = subprocess.Popen(
      [sys.executable, '-m', 'piekd_mjx.parallel'], stdin=subprocess.PIPE,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
      env=child_environment(count))
  prefix = f'[{number}/{total}] '
  relays = (_Relay(process.stdout, sys.stdout, prefix),
            _Relay(process.stderr, sys.stderr, prefix))
  try:
    json.dump({'group': group_to_json(group), 'keep': keep, 'parent': os.getpid(),
               'jax_cache_dir': jax_cache_dir, 'command_buffers': command_buffers},
              process.stdin)
    process.stdin.close()
  except BrokenPipeError:
    pass  # the child ended at once; its exit code and stderr say why
  return _Child(number, group, process, relays)


def train_groups(groups: Sequence[plan.Group], count: int, keep: str, jax_cache_dir: str,
                 command_buffers: bool) -> int:
  """Trains ``groups`` in child processes, at most ``count`` at once; the exit code."""
  pending = list(enumerate(groups, 1))
  running: list[_Child] = []
  busy, failed, crashed = [], [], []
  forwarded, stop = 0, 0  # signals passed on; the exit code that ends the sweep early
  with signals.caught(second_interrupts=False) as caught:
    while pending or running:
      for signum in caught[forwarded:]:
        for child in running:
          child.process.send_signal(signum)
        stop = stop or 128 + signum
      forwarded = len(caught)
      while pending and len(running) < count and not stop:
        number, group = pending.pop(0)
        running.append(_start(number, len(groups), group, keep, jax_cache_dir,
                              command_buffers, count))
      for child in [c for c in running if c.process.poll() is not None]:
        running.remove(child)
        for relay in child.relays:
          relay.join()
        code, label = child.process.returncode, dispatch.group_label(child.group)
        if code == EXIT_BUSY:
          busy.append(label)
        elif code == console.EXIT_NONFINITE:
          failed.append(label)
        elif code < 0 and -code in signals.STOP_SIGNALS and stop:
          pass  # the signal passed on came before the child could catch it: untouched
        elif code == console.EXIT_USAGE or code > 128:
          if not stop:  # the others stop at their next checkpoint
            for other in running:
              other.process.send_signal(signal.SIGTERM)
          stop = stop or code
        elif code:
          why = (f'killed by {signal.Signals(-code).name}' if code < 0
                 else f'ended with exit code {code}')
          print(f'error: [{child.number}/{len(groups)}] {label}: its process {why}',
                file=sys.stderr, flush=True)
          crashed.append(label)
      time.sleep(_POLL_SECONDS)
  if stop:
    if pending:
      print(f'{len(pending)} group(s) not started; run the same sweep command again to '
            'go on', file=sys.stderr, flush=True)
    return stop
  code = dispatch.summarize(busy, failed)
  return EXIT_CRASHED if crashed else code


def _die_with_parent(parent: int) -> None:
  """SIGKILL to this process when its parent dies (Linux); exits now if it already has."""
  prctl = getattr(ctypes.CDLL(None, use_errno=True), 'prctl', None)
  if prctl is not None:
    prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
  if os.getppid() != parent:
    os._exit(EXIT_CRASHED)  # pylint: disable=protected-access


def main() -> None:
  """A child: trains the group described on standard input, exits with its code."""
  spec = json.load(sys.stdin)
  _die_with_parent(spec['parent'])
  if spec['command_buffers']:
    jax_setup.command_buffers()
  jax_setup.compilation_cache(spec['jax_cache_dir'])
  group = group_from_json(spec['group'])
  try:
    with signals.caught() as caught:
      code = dispatch.train_group(group, '', trainers_lib.Trainers(), spec['keep'],
                                  lambda: caught[0] if caught else 0)
  except UsageError as e:
    print(f'error: {e}', file=sys.stderr, flush=True)
    code = console.EXIT_USAGE
  except KeyboardInterrupt:
    print('interrupted; run the same sweep command again to go on', file=sys.stderr,
          flush=True)
    code = 128 + signal.SIGINT
  sys.exit(EXIT_BUSY if code == dispatch.BUSY else code)


if __name__ == '__main__':
  main()
