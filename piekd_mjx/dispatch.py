"""Training a sweep's groups one after another, each under its runs' locks.

``train_group`` trains one group (a run alone, or runs as lanes) and prunes its
checkpoints; ``train_runs`` walks the plan's groups, stopping between them on SIGINT or
SIGTERM. ``parallel.py`` runs ``train_group`` in child processes instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from typing import Callable, Sequence

from piekd_mjx import console
from piekd_mjx import processes
from piekd_mjx import rundir
from piekd_mjx import signals
from piekd_mjx.plan import Group
from piekd_mjx.resources import UsageError
from piekd_mjx.rootdir import checkpoint_steps, has_checkpoint, hold, status_of
from piekd_mjx.trainers import Trainers


def prune(run_dir_: str, keep: str) -> None:
  """What a finished run keeps: its newest checkpoint ('last') or none ('report')."""
  checkpoints = os.path.join(run_dir_, rundir.CHECKPOINTS)
  if keep == 'report':
    for name in (rundir.CHECKPOINTS, rundir.CORRUPT):
      shutil.rmtree(os.path.join(run_dir_, name), ignore_errors=True)
    return
  for step in checkpoint_steps(run_dir_)[:-1]:
    shutil.rmtree(os.path.join(checkpoints, str(step)))


# A group held by another sweep (``train_group``'s answer; not an exit code).
BUSY = -1


def group_label(group: Group) -> str:
  """How the console names a group: its run's name, or its own and its size."""
  if len(group.runs) == 1:
    return os.path.basename(group.runs[0].run_dir)
  return f'group {group.name} ({len(group.runs)} runs)'


def train_group(group: Group, position: str, trainers: Trainers, keep: str,
                stop_signal: Callable[[], int] = lambda: 0) -> int:
  """Trains one group (a run alone, or runs as lanes) under its runs' locks and prunes
  its checkpoints; ``position`` ('[2/5] ' or '') starts its console lines. Returns 0
  (trained, or done by another sweep), ``BUSY``, ``console.EXIT_NONFINITE`` or 128 + the number
  of the signal that stopped it (``stop_signal()``'s, caught while its programs were
  built, or one during training, after its checkpoint); raises UsageError where its
  directories are not its runs'."""
  from piekd_mjx import checkpoint  # pylint: disable=g-import-not-at-top
  from piekd_mjx import executables  # pylint: disable=g-import-not-at-top
  from piekd_mjx import run  # pylint: disable=g-import-not-at-top
  label = group_label(group)
  with contextlib.ExitStack() as stack:
    # The primary holds the locks and decides for every process.
    held = processes.on_primary(
        lambda: all([stack.enter_context(hold(s.run_dir)) for s in group.runs]))
    if not processes.broadcast(int(bool(held))):
      print(f'{position}{label}: held by another sweep; skipped', flush=True)
      return BUSY
    # As they are now that this process holds them.
    runs = [status_of(s.config, s.run_dir, holding=True) for s in group.runs]
    for status in runs:
      if status.state == 'conflict':
        raise UsageError(f'{status.run_dir}: {status.reason}')
    if len(runs) == 1 and runs[0].state == 'done':
      print(f'{position}{label}: done (by another sweep)', flush=True)
      return 0
    config = runs[0].config
    executables.release_if_crowded()  # room for this group's programs
    try:
      if len(runs) == 1:
        status = runs[0]
        print(f'{position}{label}: {status.state}, {config.env} {config.variant} '
              f'S={config.num_seeds} K={config.ensemble_size} to step '
              f'{config.total_steps:,}', flush=True)
        trainer = trainers.trainer(config)
        if signum := stop_signal():
          return _stopped_before(signum, label)
        run.run(config, status.run_dir, trainer=trainer, resume=status.state == 'partial')
      else:
        configs = [s.config for s in runs]
        resume = has_checkpoint(group.directory)
        print(f'{position}{label}: {"partial" if resume else "new"}, {config.env} '
              f'K={config.ensemble_size} L={group.lanes} to step {config.total_steps:,}: '
              + ', '.join(f'{os.path.basename(s.run_dir)} ({s.state})' for s in runs),
              flush=True)
        trainer = trainers.group_trainer(configs)
        if signum := stop_signal():
          return _stopped_before(signum, label)
        run.run_group(configs, [s.run_dir for s in runs], group.directory, trainer=trainer,
                      resume=resume)
    except run.NonFiniteError as e:
      print(f'error: {label}: {e}', file=sys.stderr, flush=True)
      return console.EXIT_NONFINITE
    except run.Stopped as e:
      print(f'{e}; checkpoint {e.checkpoint}; run the same sweep command again to go on',
            file=sys.stderr, flush=True)
      return 128 + e.signum
    except checkpoint.ResumeError as e:
      raise UsageError(f'{group.directory}: {e}') from None
    processes.on_primary(prune, group.directory, keep)
  return 0


def train_runs(groups: Sequence[Group], trainers: Trainers, keep: str) -> int:
  """Trains every group one after another (``train_group``); returns the exit code."""
  failed, busy = [], []
  with signals.caught() as caught:
    for number, group in enumerate(groups, 1):
      if signum := processes.largest(caught[0] if caught else 0):
        return _stopped_between(signum, number, len(groups))
      code = train_group(group, f'[{number}/{len(groups)}] ', trainers, keep,
                         lambda: processes.largest(caught[0] if caught else 0))
      if code == BUSY:
        busy.append(group_label(group))
      elif code == console.EXIT_NONFINITE:
        failed.append(group_label(group))
      elif code:
        return code
    if signum := processes.largest(caught[0] if caught else 0):
      return 128 + signum
  return summarize(busy, failed)


def summarize(busy: Sequence[str], failed: Sequence[str]) -> int:
  """Prints the groups skipped as busy and those that became non-finite; the exit code."""
  if busy:
    print(f'{len(busy)} run(s) or group(s) were held by another sweep: ' + ', '.join(busy),
          flush=True)
  if failed:
    print(f'error: {len(failed)} run(s) or group(s) became non-finite: ' + ', '.join(failed),
          file=sys.stderr, flush=True)
    return console.EXIT_NONFINITE
  return 0


def _stopped_before(signum: int, label: str) -> int:
  print(f'stopped by {signal.Signals(signum).name} before {label} trained; run the same '
        'sweep command again to go on', file=sys.stderr, flush=True)
  return 128 + signum


def _stopped_between(signum: int, number: int, count: int) -> int:
  if number <= count:
    print(f'stopped by {signal.Signals(signum).name} before run {number}/{count}; run the '
          'same sweep command again to go on', file=sys.stderr, flush=True)
  return 128 + signum
