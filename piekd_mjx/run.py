"""A run, or a group of runs as lanes of one program: its directories, restore and loop.

A run directory holds ``config.json``, ``metrics.jsonl`` (one JSON object per
evaluation, ``records.py``), ``run.log`` (the lines printed, ``console.py``), the
checkpoints (``checkpoint.py``) and TensorBoard event files when tensorboardX is
installed (``rundir.py`` lists them). ``run_group`` sets them up, restores the newest
checkpoint when resuming (``resume.py``) and hands the state to the host loop
(``loop.py``), which walks the schedule's events.

Exact resume: a run continued from a checkpoint ends with the same metrics as one that
never stopped, except the wall-clock fields ``records.WALL_CLOCK_FIELDS``. It rests on
three facts: the checkpoint holds the whole ``TrainState`` and the host loop's state
(``progress.Progress``); chunk boundaries depend only on the config (the events and
``log_every``), and a checkpoint is only taken at one; and ``lax.fori_loop`` over a
chunk gives bit-identical states however the steps are split into chunks.

Numerical health: after every chunk and phase the loop checks that the losses and the
members' states are finite, and when an evaluation ends that its returns are; if not,
the run stops with ``NonFiniteError`` naming the seed, member and step, before anything
more is saved (an overlapped evaluation ends after the checkpoint of its step, whose
state passed the checks).

Evaluation overlaps training (``Config.eval_overlap``, ``inflight.py``): the evaluation
of step t scores a copy of the actors of step t on a second host thread while the phase,
the checkpoint and the next chunks run, and its record is written when it ends, at the
latest before the next evaluation starts. A checkpoint taken while it runs holds those
actors and the record so far, so a run killed before the record was written evaluates
them again on resume: the same episodes, the same returns.

SIGINT and SIGTERM (``signals.py``) stop the run at the next chunk boundary, after a
checkpoint there (``Stopped``).

A group of runs (``programs.make_group_trainer``) is one host loop over the lanes of all
of them: every run keeps its own directory, ``config.json``, ``metrics.jsonl``,
``run.log`` and TensorBoard files, written from its own lanes, and the group's
checkpoints (the whole state, every run's progress) go to the group's directory. A run
alone is the group of one whose directory is its own.

Over several processes every process runs the same loop over its own lanes; what differs
between them is decided by ``processes.py`` alone (the primary writes files, prints and
evaluates; what the host reads is gathered to all, so they check and stop alike).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, Sequence, TextIO

import jax

from piekd_mjx import checkpoint as checkpoint_lib
from piekd_mjx import config as config_lib
from piekd_mjx import console
from piekd_mjx import files
from piekd_mjx import processes
from piekd_mjx import programs as programs_lib
from piekd_mjx import resume as resume_lib
from piekd_mjx import rundir
from piekd_mjx import sharding as sharding_lib
from piekd_mjx import signals
from piekd_mjx.config import Config
from piekd_mjx.health import NonFiniteError
from piekd_mjx.loop import Loop, Stopped, dir_name
from piekd_mjx.progress import Progress

__all__ = ['run', 'run_group', 'NonFiniteError', 'Stopped']


def run(config: Config, run_dir: str, out: TextIO = sys.stdout,
        trainer: programs_lib.Trainer | None = None, resume: bool = False,
        err: TextIO = sys.stderr) -> list[dict[str, Any]]:
  """Trains ``config`` (validated, variant applied) into ``run_dir``.

  Args:
    config: the run's configuration.
    run_dir: the run directory (created if missing).
    out: where progress lines go (and the run's log file ``run.log``).
    trainer: the programs of ``config`` (built when None).
    resume: continue from the newest checkpoint in ``run_dir`` that restores (from step
      0 when there is none); the records of ``metrics.jsonl`` past its step are
      dropped (the original is kept as ``metrics.jsonl.before-resume-<n>``) since this
      run writes them again.
    err: where warnings go (and ``run.log``): the flags the variant ignores
      (``config.ignored_flags``), checkpoints that do not restore.

  Returns:
    The metrics records this call wrote.

  Raises:
    checkpoint.ResumeError: ``resume`` and no checkpoint restores (nothing has been
      written), or the checkpoint is past ``config.total_steps`` (only checkpoints
      that did not restore have been moved aside).
    NonFiniteError: a loss, parameter or return became non-finite.
    Stopped: SIGINT or SIGTERM arrived; a checkpoint of the step reached was written.
  """
  return run_group([config], [run_dir], run_dir, out, trainer, resume, err)[0]


def run_group(configs: Sequence[Config], run_dirs: Sequence[str], group_dir: str,
              out: TextIO = sys.stdout, trainer: programs_lib.Trainer | None = None,
              resume: bool = False, err: TextIO = sys.stderr) -> list[list[dict[str, Any]]]:
  """Trains ``configs`` (one ``keys.group_key``, the same schedule but for their
  phases) as the lanes of one program, run r into ``run_dirs[r]``, checkpoints into
  ``group_dir``; as ``run`` otherwise. Returns each run's records written."""
  configs, run_dirs = list(configs), list(run_dirs)
  trainer = trainer or programs_lib.make_group_trainer(configs)
  config = configs[0]
  output = processes.on_primary(console.Output, out, err) or console.Quiet()
  for directory in dict.fromkeys(run_dirs + [group_dir]):
    processes.on_primary(os.makedirs, directory, exist_ok=True)
    output.open(directory)
  processes.barrier('run directories')
  _describe(configs, run_dirs, trainer, output)
  checkpointer = checkpoint_lib.Checkpointer(
      group_dir, config.keep_checkpoints,
      sharding_lib.abstract(jax.eval_shape(trainer.init), trainer.mesh))
  try:
    devices = trainer.mesh.size if trainer.mesh is not None else 1
    state, progress, pending = None, Progress.start(len(configs), devices,
                                                    processes.count()), None
    if resume:
      state, progress, pending = resume_lib.restore(configs, run_dirs, checkpointer, output,
                                                    devices)
    # Fresh and restored states alike are committed to the device, so that every chunk
    # of a run, resumed or not, calls the same compiled program.
    state = trainer.place(trainer.init() if state is None else state)
    processes.on_primary(_write_configs, configs, run_dirs, group_dir)
    with signals.caught() as stop:
      return Loop(configs, run_dirs, trainer, checkpointer, output, progress).run(
          state, progress, stop, pending)
  finally:
    checkpointer.close()
    output.close()


def replay_bytes_per_lane(trainer: programs_lib.Trainer) -> int:
  return trainer.replay.capacity * trainer.replay.bytes_per_transition


def _describe(configs: list[Config], run_dirs: list[str], trainer: programs_lib.Trainer,
              output: console.Output) -> None:
  """The group's first line (task, variants, lanes, replay memory, devices) and the
  flags each run's variant ignores."""
  config = configs[0]
  per_lane = replay_bytes_per_lane(trainer)
  num_lanes = sum(c.num_seeds for c in configs)
  names = ', '.join(c.variant for c in configs)
  output.log(
      f'{config.env} · {names} · L={num_lanes} K={config.ensemble_size} · '
      f'replay {config.replay_capacity:,} × {trainer.replay.bytes_per_transition} B = '
      f'{per_lane / 2**20:,.1f} MiB per lane ({num_lanes * per_lane / 2**20:,.1f} '
      f'MiB in all) on {sharding_lib.describe(trainer.mesh)}')
  for r, c in enumerate(configs):
    for line in config_lib.ignored_flags(c):
      output.warn(line if len(configs) == 1 else f'{dir_name(run_dirs[r])}: {line}',
                  only=r if len(configs) > 1 else None)


def _write_configs(configs: list[Config], run_dirs: list[str], group_dir: str) -> None:
  """Each run's ``config.json`` and, for a group of its own directory, its
  ``group.json`` (the run directories of its lanes)."""
  for c, run_dir in zip(configs, run_dirs):
    files.write_atomic(os.path.join(run_dir, rundir.CONFIG_FILE),
                       json.dumps(dataclasses.asdict(c), indent=2))
  if group_dir not in run_dirs:
    files.write_atomic(os.path.join(group_dir, rundir.GROUP_FILE), json.dumps(
        {'runs': [os.path.abspath(d) for d in run_dirs]}, indent=2))
