"""The command line: ``python -m piekd_mjx.launch --env=hopper --num_seeds=5``.

Every field of ``Config`` is a flag (``--help`` lists them); ``--variant`` picks
one of the paper's variants; ``--resume --out_dir=DIR`` continues the run in DIR from
its newest checkpoint. ``--coordinator_address``, ``--num_processes`` and
``--process_id`` (or a SLURM or Open MPI launcher) make one run span several processes
(``processes.py``); every process takes the same flags but its ``--process_id``.

Exit codes:
  0    the run finished.
  2    bad input: one line ``error: ...`` on stderr naming the value and what is valid,
       and nothing written (no run directory created, none changed).
  3    a loss, parameter or return became non-finite; the line names the seed, member
       and step and the last good checkpoint.
  130  stopped by SIGINT (143: SIGTERM) at a chunk boundary, after a checkpoint; the
       line says how to resume.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import signal
import sys

from absl import flags

from piekd_mjx import config as config_lib
from piekd_mjx import config_flags
from piekd_mjx import console
from piekd_mjx import jax_setup
from piekd_mjx import processes
from piekd_mjx import rundir
from piekd_mjx.resources import (UsageError, check_backend, check_env, check_memory,
                                 check_writable)

FLAGS = flags.FLAGS
config_flags.define_flags(FLAGS)
processes.define_flags(FLAGS)
flags.DEFINE_bool('overwrite', False,
                  'Replace the run in --out_dir (deleted first). Only a directory that '
                  'holds a run of this program and nothing else can be replaced.')
flags.DEFINE_bool('resume', False,
                  'Continue the run in --out_dir from its newest checkpoint. Flags given '
                  'override its config.json only in fields that leave training unchanged: '
                  + ', '.join(config_lib.RESUMABLE_FIELDS) + '.')
jax_setup.define_flags(FLAGS)
flags.DEFINE_bool('help', False, 'Show the flags and exit.')


def resolve_config(flag_values: flags.FlagValues = FLAGS) -> config_lib.Config:
  """The validated config of the flags, with the variant applied."""
  config, explicit = config_flags.config_from_flags(flag_values)
  config = config_lib.apply_variant(config, explicit)
  config.validate()
  check_env(config.env, config.solver)
  return config


def resolve_run_dir(config: config_lib.Config, overwrite: bool) -> str:
  """The run directory: --out_dir, or runs/<env>-<variant>-<time> when it is empty."""
  run_dir = config.out_dir or os.path.join(
      'runs', f'{config.env}-{config.variant}-'
      f'{datetime.datetime.now().strftime("%Y%m%d-%H%M%S")}')
  if os.path.exists(run_dir) and not os.path.isdir(run_dir):
    raise UsageError(f'--out_dir={run_dir!r} is a file, not a directory')
  if overwrite:
    try:
      rundir.check_replaceable(run_dir)
    except rundir.NotARunError as e:
      raise UsageError(str(e)) from None
  elif os.path.isdir(run_dir) and rundir.entries(run_dir):
    what = ('already holds a run; pass --resume to continue it, --overwrite to replace it,'
            if os.path.isfile(os.path.join(run_dir, rundir.CONFIG_FILE)) else
            'is not empty;')
    raise UsageError(f'--out_dir={run_dir!r} {what} or choose another directory')
  return run_dir


def resolve_resume(flag_values: flags.FlagValues = FLAGS) -> config_lib.Config:
  """The config of ``--resume``: the run's ``config.json`` with the flags given
  explicitly, which may only change ``config_lib.RESUMABLE_FIELDS``."""
  run_dir = flag_values.out_dir
  if not run_dir:
    raise UsageError('--resume needs --out_dir naming the run directory to continue')
  if flag_values.overwrite:
    raise UsageError('--resume and --overwrite exclude each other: --resume continues '
                     f'--out_dir={run_dir!r}, --overwrite would delete it')
  path = os.path.join(run_dir, 'config.json')
  if not os.path.isfile(path):
    raise UsageError(f'--out_dir={run_dir!r} holds no run to resume (no config.json)')
  try:
    saved = rundir.read_config(run_dir)
  except (OSError, ValueError, TypeError) as e:
    raise UsageError(f'--out_dir={run_dir!r} holds an unreadable config.json ({e})') from None
  flagged, explicit = config_flags.config_from_flags(flag_values)
  given = {name: getattr(flagged, name) for name in explicit}
  config = dataclasses.replace(saved, **{**given, 'out_dir': run_dir})
  config.validate()
  check_env(config.env, config.solver)
  config_lib.check_resumable(saved, config)
  return config


def _replace(run_dir: str) -> None:
  """Deletes the run in ``run_dir`` for ``--overwrite``; refuses what is not a run."""
  try:
    rundir.replace(run_dir)
  except rundir.NotARunError as e:
    console.fail(str(e))


def main(argv: list[str]) -> None:
  config_flags.parse_or_exit(FLAGS, argv)
  try:
    distributed = processes.arguments_from_flags(FLAGS)
    if distributed is not None and not FLAGS.out_dir:
      raise UsageError('--out_dir missing: a run over several processes needs --out_dir '
                       'naming one directory that every process sees')
    if FLAGS.resume:
      config = resolve_resume(FLAGS)
      run_dir = config.out_dir
    else:
      config = resolve_config(FLAGS)
      run_dir = resolve_run_dir(config, FLAGS.overwrite)
      config = dataclasses.replace(config, out_dir=run_dir)
    check_writable(run_dir)
  except (ValueError, UsageError) as e:
    console.fail(str(e))
  try:
    jax_setup.from_flags(FLAGS)
    processes.initialize(distributed)
    from piekd_mjx import checkpoint  # pylint: disable=g-import-not-at-top
    from piekd_mjx import programs as programs_lib  # pylint: disable=g-import-not-at-top
    from piekd_mjx import run  # pylint: disable=g-import-not-at-top
    from piekd_mjx import sharding  # pylint: disable=g-import-not-at-top
    try:
      sharding.check_run(config.num_devices, config.num_seeds)
      check_backend(config.solver)
    except ValueError as e:
      console.fail(str(e))
    trainer = programs_lib.make_trainer(config)
    try:
      check_memory(config, trainer.replay.bytes_per_transition)
    except UsageError as e:
      console.fail(str(e))
    if FLAGS.overwrite:
      processes.on_primary(_replace, run_dir)
    processes.barrier('run directory ready')
    processes.on_primary(print, f'run directory: {run_dir}', flush=True)
    try:
      run.run(config, run_dir, trainer=trainer, resume=FLAGS.resume)
    except checkpoint.ResumeError as e:
      console.fail(str(e))
    except run.NonFiniteError as e:
      console.fail(str(e), console.EXIT_NONFINITE)
    except run.Stopped as e:
      processes.on_primary(print, f'{e}; checkpoint {e.checkpoint}; continue with: python '
                           f'-m piekd_mjx.launch --resume --out_dir={run_dir}',
                           file=sys.stderr, flush=True)
      sys.exit(128 + e.signum)
  except KeyboardInterrupt:
    hint = (f'; continue from its last checkpoint with: python -m piekd_mjx.launch --resume '
            f'--out_dir={run_dir}' if os.path.isfile(os.path.join(run_dir, 'config.json'))
            else '')
    print(f'interrupted{hint}', file=sys.stderr, flush=True)
    sys.exit(128 + signal.SIGINT)


if __name__ == '__main__':
  main(sys.argv)
