"""The command line: ``python -m piekd_mjx.launch --env=hopper --num_seeds=5``.

Every field of ``Config`` is a flag (``--helpfull`` lists them); ``--variant`` picks
one of the paper's variants. Bad input ends with a one-line error naming the flag and
what is valid, exit code 2, and nothing written.
"""

from __future__ import annotations

import datetime
import os
import sys

from absl import flags

from piekd_mjx import config as config_lib
from piekd_mjx import config_flags

FLAGS = flags.FLAGS
config_flags.define_flags(FLAGS)
flags.DEFINE_bool('overwrite', False,
                  'Replace an existing run directory --out_dir (its contents are deleted).')
flags.DEFINE_string('jax_cache_dir', os.path.expanduser('~/.cache/piekd_mjx/jax'),
                    "JAX's persistent compilation cache ('' to disable).")

EXIT_USAGE = 2


class UsageError(Exception):
  """Bad input: reported as one line, exit code 2."""


def _fail(message: str) -> None:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(EXIT_USAGE)


def resolve_config(flag_values: flags.FlagValues = FLAGS) -> config_lib.Config:
  """The validated config of the flags, with the variant applied."""
  config, explicit = config_flags.config_from_flags(flag_values)
  config = config_lib.apply_variant(config, explicit)
  config.validate()
  from piekd_mjx import envs  # pylint: disable=g-import-not-at-top
  if config.env not in envs.names():
    raise ValueError(f'--env={config.env!r} is invalid: must be one of '
                     f'{", ".join(envs.names())}')
  return config


def resolve_run_dir(config: config_lib.Config, overwrite: bool) -> str:
  """The run directory: --out_dir, or runs/<env>-<variant>-<time> when it is empty."""
  run_dir = config.out_dir or os.path.join(
      'runs', f'{config.env}-{config.variant}-'
      f'{datetime.datetime.now().strftime("%Y%m%d-%H%M%S")}')
  if os.path.exists(run_dir) and not os.path.isdir(run_dir):
    raise UsageError(f'--out_dir={run_dir!r} is a file, not a directory')
  if os.path.isdir(run_dir) and os.listdir(run_dir) and not overwrite:
    raise UsageError(f'--out_dir={run_dir!r} already holds a run; choose another '
                     'directory or pass --overwrite to replace it')
  return run_dir


def main(argv: list[str]) -> None:
  try:
    FLAGS(argv)
  except flags.Error as e:
    _fail(str(e).splitlines()[0])
  try:
    config = resolve_config(FLAGS)
    run_dir = resolve_run_dir(config, FLAGS.overwrite)
  except (ValueError, UsageError) as e:
    _fail(str(e))
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.jax_cache_dir:
    jax.config.update('jax_compilation_cache_dir', FLAGS.jax_cache_dir)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
  if FLAGS.overwrite and os.path.isdir(run_dir):
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(run_dir)
  from piekd_mjx import run  # pylint: disable=g-import-not-at-top
  print(f'run directory: {run_dir}', flush=True)
  try:
    run.run(config, run_dir)
  except KeyboardInterrupt:
    _fail('interrupted')


if __name__ == '__main__':
  main(sys.argv)
