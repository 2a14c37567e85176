"""What a run needs of the machine, checked before anything is written: a writable run
directory and memory for its replay buffers. Bad input raises ``UsageError``."""

from __future__ import annotations

import os
import tempfile

from piekd_mjx import config as config_lib
from piekd_mjx import rundir

# Device memory the run needs besides its replay buffers (networks, environments,
# XLA's temporaries), a generous bound for the networks of the paper.
MEMORY_MARGIN_BYTES = 256 * 2**20


class UsageError(Exception):
  """Bad input: reported as one line, exit code 2."""


def check_env(env: str, solver: str = 'faithful') -> None:
  """Raises ValueError naming ``--env`` unless it is one of ``envs.names()`` (or the
  tests' physics-free ``stub``), or naming ``--solver`` where that task does not offer
  it (``capped``, ``warp``, ``mujoco_c``)."""
  from piekd_mjx import envs  # pylint: disable=g-import-not-at-top
  if env not in envs.names() and env not in envs.STUBS:
    raise ValueError(f'--env={env!r} is invalid: must be one of {", ".join(envs.names())}')
  if solver not in envs.EVERY_TASK_SOLVERS:  # else no need to import the task (MJX)
    envs.make_class(env).solver_options(solver)


def check_backend(solver: str) -> None:
  """Raises ValueError naming ``--solver`` where JAX's backend cannot run it (``mujoco_c``
  runs on a CPU only). Call it once the JAX set-up is done: it starts the backend."""
  if solver == 'mujoco_c':
    from piekd_mjx.envs import mujoco_c  # pylint: disable=g-import-not-at-top
    mujoco_c.check_backend()


def check_writable(run_dir: str, flag: str = 'out_dir') -> None:
  """Raises UsageError, naming ``--flag``, unless files can be created in ``run_dir``
  or, when it does not exist yet, in its nearest existing parent (probed with a
  directory removed at once)."""
  path = os.path.abspath(run_dir)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  if not os.path.isdir(path):
    raise UsageError(f'--{flag}={run_dir!r} is invalid: {path} is a file, not a directory')
  try:
    if not os.access(path, os.W_OK | os.X_OK):
      raise PermissionError(f'no write permission on {path}')
    os.rmdir(tempfile.mkdtemp(prefix=rundir.WRITE_PROBE, dir=path))
  except OSError as e:
    raise UsageError(f'--{flag}={run_dir!r} is not writable: cannot create files in '
                     f'{path} ({e.strerror or e})') from None


def available_memory() -> tuple[int, str]:
  """Bytes free on this process's first device (a GPU's limit less what is in use, or
  the host's available memory on a CPU), and the name of that memory."""
  import jax  # pylint: disable=g-import-not-at-top
  device = jax.local_devices()[0]
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except
    stats = None  # platforms without memory statistics
  if stats and 'bytes_limit' in stats:
    return (int(stats['bytes_limit']) - int(stats.get('bytes_in_use', 0)),
            f'the {device.platform} device ({device.device_kind})')
  import psutil  # pylint: disable=g-import-not-at-top
  return int(psutil.virtual_memory().available), 'the host (available RAM)'


def check_memory(config: config_lib.Config, bytes_per_transition: int,
                 available: tuple[int, str] | None = None) -> None:
  """Raises UsageError when the replay buffers of every seed cannot fit in memory."""
  needed = config.num_seeds * config.replay_capacity * bytes_per_transition
  free, where = available or available_memory()
  if needed + MEMORY_MARGIN_BYTES > free:
    raise UsageError(
        f'--replay_capacity={config.replay_capacity:,} × --num_seeds={config.num_seeds} '
        f'needs {needed / 2**30:,.2f} GiB of replay buffers ({bytes_per_transition} B per '
        f'transition, plus {MEMORY_MARGIN_BYTES / 2**30:.2f} GiB for the rest) but '
        f'{where} has {free / 2**30:,.2f} GiB free; lower --replay_capacity or --num_seeds')
