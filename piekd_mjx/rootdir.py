"""A sweep's root: its runs, figures and groups, the state of each run, and run locks.

``ROOT/runs/<grid.run_name>`` holds each run's directory, ``ROOT/figures/<name>.json``
each figure's description for the report, ``ROOT/groups/<name>`` the checkpoints of each
group of runs trained as lanes of one program. A run's directory is held with a lock
(``run.lock``) while a sweep trains it, so two sweeps on one root never train the same
run at once.
"""

from __future__ import annotations

import dataclasses
import os
from typing import ContextManager, Sequence

from piekd_mjx import files
from piekd_mjx import grid
from piekd_mjx import records as records_lib
from piekd_mjx import rundir
from piekd_mjx.config import Config
from piekd_mjx.resources import UsageError

RUNS, FIGURES, GROUPS = 'runs', 'figures', 'groups'


@dataclasses.dataclass(frozen=True)
class RunStatus:
  """Where one run of the sweep stands.

  ``state``: 'new' (nothing trained), 'partial' (to resume), 'done' (its records reach
  the sweep's total_steps), 'busy' (another sweep holds it), 'conflict' (the directory
  holds something else: ``reason`` says what).
  """

  config: Config
  run_dir: str
  state: str
  step: int = 0  # the last evaluation's step on disk
  reason: str = ''


def _last_step(run_dir: str) -> int:
  """The step of the last whole record of ``metrics.jsonl`` (0 without one)."""
  return max(records_lib.steps(run_dir), default=0)


def _held(run_dir: str) -> bool:
  """Whether another process holds ``run_dir``'s lock."""
  return files.is_locked(os.path.join(run_dir, rundir.LOCK_FILE))


def status_of(config: Config, run_dir: str, holding: bool = False) -> RunStatus:
  """The ``RunStatus`` of ``config`` in ``run_dir`` (``holding``: this process holds its
  lock, so it is not busy)."""
  if not os.path.isdir(run_dir):
    return RunStatus(config, run_dir, 'new')
  if not holding and _held(run_dir):
    return RunStatus(config, run_dir, 'busy', _last_step(run_dir))
  entries = set(os.listdir(run_dir)) - {rundir.LOCK_FILE}
  config_path = os.path.join(run_dir, rundir.CONFIG_FILE)
  if not os.path.isfile(config_path):
    if not entries:
      return RunStatus(config, run_dir, 'new')
    return RunStatus(config, run_dir, 'conflict', reason='it holds files but no config.json')
  try:
    saved = rundir.read_config(run_dir)
  except (OSError, ValueError, TypeError) as e:
    return RunStatus(config, run_dir, 'conflict', reason=f'its config.json does not read ({e})')
  differs = [name for name, value in grid.identity(saved).items()
             if grid.identity(config)[name] != value]
  differs += [name for name in ('eval_every', 'eval_episodes')
              if getattr(saved, name) != getattr(config, name)]
  if differs:
    name = differs[0]
    return RunStatus(config, run_dir, 'conflict', reason=(
        f'its config.json has {name}={getattr(saved, name)!r} where the sweep runs '
        f'{getattr(config, name)!r}'))
  step = _last_step(run_dir)
  if step >= config.total_steps:
    return RunStatus(config, run_dir, 'done', step)
  # A run asked for longer before goes on to its own end.
  target = max(config.total_steps, saved.total_steps)
  return RunStatus(dataclasses.replace(config, total_steps=target), run_dir, 'partial', step)


def statuses(root: str, figures: Sequence[grid.Figure]) -> list[RunStatus]:
  """The ``RunStatus`` of every unique run of ``figures`` under ``root``."""
  try:
    configs = grid.unique_runs(figures)
  except ValueError as e:
    raise UsageError(str(e)) from None
  return [status_of(dataclasses.replace(c, out_dir=run_dir(root, c)), run_dir(root, c))
          for c in configs]


def run_dir(root: str, config: Config) -> str:
  return os.path.join(root, RUNS, grid.run_name(config))


def hold(run_dir_: str) -> ContextManager[bool]:
  """Holds ``run_dir_``'s lock while active; yields False when another process has it.
  The lock goes with the process, however it ends."""
  os.makedirs(run_dir_, exist_ok=True)
  return files.lock(os.path.join(run_dir_, rundir.LOCK_FILE))


def checkpoint_steps(directory: str) -> list[int]:
  """The steps of the checkpoints in ``directory``'s ``checkpoints/``, oldest first."""
  return rundir.checkpoint_steps(os.path.join(directory, rundir.CHECKPOINTS))


def has_checkpoint(directory: str) -> bool:
  return bool(checkpoint_steps(directory))
