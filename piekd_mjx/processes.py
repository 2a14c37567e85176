"""Runs over several processes (hosts) with JAX's own runtime, ``jax.distributed``.

This module is the one seam that knows whether there are several processes: the run,
its loop, restore, checkpoints and programs call ``on_primary``, ``fetch``, ``gather``,
``from_primary``, ``largest``, ``barrier`` and ``own_device``, which do the right thing
for one process and for several, and never ask how many there are
(tests/test_layout.py checks it).

Every process runs the same host loop over the same schedule and holds the lanes of
its own devices (``sharding.lane_mesh`` spans every device of every process). What
the host reads of the state is gathered to every process (``fetch``), so all of them
make the same decisions (a non-finite loss stops them all at one step); the primary
process (0) alone writes files and logs and runs the evaluations, whose returns it
hands to the others (``broadcast``); checkpoints are orbax's, each process writing and
reading its own shards.

``--coordinator_address``, ``--num_processes`` and ``--process_id`` are the
arguments of ``jax.distributed.initialize``; given none, a job started by SLURM
(``srun``) or Open MPI (``mpirun``) with several tasks is detected from its
environment as JAX does. On CPUs the processes talk over gloo.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Callable, Mapping

from absl import flags
import numpy as np

# The variables by which JAX recognises a SLURM step or an Open MPI job (its
# clusters/slurm_cluster.py and ompi_cluster.py), and each one's number of tasks.
_LAUNCHERS = {
    'SLURM': (('SLURM_JOB_ID', 'SLURM_STEP_NODELIST', 'SLURM_NTASKS', 'SLURM_PROCID',
               'SLURM_LOCALID'), 'SLURM_NTASKS'),
    'Open MPI': (('OMPI_MCA_orte_hnp_uri', 'OMPI_COMM_WORLD_SIZE', 'OMPI_COMM_WORLD_RANK'),
                 'OMPI_COMM_WORLD_SIZE'),
}
_ADDRESS = re.compile(r'^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$')


def define_flags(flag_values: flags.FlagValues) -> None:
  """The flags of ``jax.distributed.initialize``; none given: one process, unless a
  SLURM or Open MPI launcher started several."""
  flags.DEFINE_string('coordinator_address', None,
                      'host:port of process 0, which every process of a run over '
                      'several processes connects to (with --num_processes and '
                      '--process_id; detected under SLURM and Open MPI when all three '
                      'are left out).', flag_values=flag_values)
  flags.DEFINE_integer('num_processes', None,
                       'How many processes (hosts) the run spans.', flag_values=flag_values)
  flags.DEFINE_integer('process_id', None,
                       "This process's index, 0 to --num_processes - 1; 0 writes the "
                       "run's files.", flag_values=flag_values)


def launcher(environ: Mapping[str, str] = os.environ) -> tuple[str, int] | None:
  """(name, number of tasks) of the SLURM step or Open MPI job this process is a task
  of, when it started more than one; else None."""
  for name, (needed, count) in _LAUNCHERS.items():
    if all(v in environ for v in needed):
      try:
        tasks = int(environ[count])
      except ValueError:
        continue
      if tasks > 1:
        return name, tasks
  return None


def arguments(coordinator_address: str | None, num_processes: int | None,
              process_id: int | None, environ: Mapping[str, str] = os.environ
              ) -> dict[str, Any] | None:
  """The keyword arguments of ``jax.distributed.initialize`` for the flags given (a
  launcher's environment fills those left out), or None for a run in one process.

  Raises:
    ValueError: a flag's value is invalid, or without a launcher the three are not
      given together.
  """
  given = {'coordinator_address': coordinator_address, 'num_processes': num_processes,
           'process_id': process_id}
  given = {k: v for k, v in given.items() if v is not None}
  if coordinator_address is not None and not _ADDRESS.match(coordinator_address):
    raise ValueError(f'--coordinator_address={coordinator_address!r} is invalid: must be '
                     'host:port of process 0, e.g. 10.0.0.1:1234')
  if num_processes is not None and num_processes < 1:
    raise ValueError(f'--num_processes={num_processes} is invalid: must be at least 1')
  if process_id is not None and (process_id < 0 or (
      num_processes is not None and process_id >= num_processes)):
    top = f'{num_processes - 1}' if num_processes is not None else '--num_processes - 1'
    raise ValueError(f'--process_id={process_id} is invalid: must be 0 to {top}')
  if launcher(environ) is not None:
    return given
  if not given or num_processes == 1:
    return None
  missing = [f'--{k}' for k in ('coordinator_address', 'num_processes', 'process_id')
             if k not in given]
  if missing:
    raise ValueError(f'{", ".join(missing)} missing: a run over several processes needs '
                     '--coordinator_address, --num_processes and --process_id in every '
                     'process (or a SLURM or Open MPI launcher that sets them)')
  return given


def arguments_from_flags(flag_values: flags.FlagValues,
                         environ: Mapping[str, str] = os.environ) -> dict[str, Any] | None:
  """``arguments`` of the flags ``define_flags`` defined in ``flag_values``."""
  return arguments(flag_values.coordinator_address, flag_values.num_processes,
                   flag_values.process_id, environ)


def initialize(kwargs: Mapping[str, Any] | None) -> None:
  """Joins the processes of ``kwargs`` (from ``arguments``; None: nothing to join);
  returns once every process has. Must come before anything else uses JAX."""
  if kwargs is None:
    return
  import jax  # pylint: disable=g-import-not-at-top
  # CPUs have no collectives of their own across processes: gloo carries them (GPUs
  # use NCCL whatever this says).
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(**kwargs)


def count() -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_count()


def index() -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_index()


def is_primary() -> bool:
  """Whether this process writes the run's files (process 0)."""
  return index() == 0


def on_primary(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
  """``fn(*args, **kwargs)`` on the primary process, which alone writes files, prints and
  evaluates; None on the others."""
  return fn(*args, **kwargs) if is_primary() else None


def quiet_unless_primary() -> None:
  """Sends this process's standard output to /dev/null unless it is the primary, which
  alone prints."""
  if not is_primary():
    sys.stdout = open(os.devnull, 'w', encoding='utf-8')


def gather(tree: Any) -> Any:
  """``tree`` with every lane addressable here: as it is on one process (on its
  devices); gathered from all of them, as numpy, on several (a collective)."""
  return tree if count() == 1 else fetch(tree)


def from_primary(compute: Callable[[], Any], like: Any) -> Any:
  """``compute()`` of the primary process on every process: the others pass ``like``,
  a tree of its structure and shapes (a collective where there are several)."""
  if count() == 1:
    return compute()
  return broadcast(compute() if is_primary() else like)


def fetch(tree: Any) -> Any:
  """``tree`` as numpy on the host, every lane of it: on several processes, gathered
  from all of them (a collective: every process must call it at the same point)."""
  import jax  # pylint: disable=g-import-not-at-top
  if count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return multihost_utils.process_allgather(tree, tiled=True)


def broadcast(tree: Any) -> Any:
  """The primary's ``tree`` (numpy) on every process; the others pass one of the same
  shapes. A collective."""
  if count() == 1:
    return tree
  import jax  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return jax.device_get(multihost_utils.broadcast_one_to_all(tree))


def largest(value: int) -> int:
  """The largest of every process's ``value``. A collective."""
  if count() == 1:
    return value
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return int(np.max(multihost_utils.process_allgather(np.int32(value))))


def smallest(value: int) -> int:
  """The smallest of every process's ``value`` (int32). A collective."""
  return -largest(-value)


def barrier(name: str) -> None:
  """Returns once every process has reached the barrier ``name``."""
  if count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)


def devices_by_process() -> list[list[Any]]:
  """Every process's devices, process by process, each in id order (one list on one
  process)."""
  import jax  # pylint: disable=g-import-not-at-top
  return [sorted((x for x in jax.devices() if x.process_index == p), key=lambda x: x.id)
          for p in range(jax.process_count())]


def own_device(device: Any) -> Any:
  """``device`` where this process holds it, else this process's first device: where
  the primary runs what another process's device holds (an evaluation)."""
  import jax  # pylint: disable=g-import-not-at-top
  return device if device.process_index == jax.process_index() else jax.local_devices()[0]
