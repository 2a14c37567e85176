"""Lanes over devices: a ``Mesh`` of one axis, ``LANES``, and every [L, ...] leaf of the
training state split along it, so each device holds and trains its own block of lanes
(its replay buffers included) and nothing crosses between devices inside a program.

A lane's computation does not depend on the other lanes (``lanes``), so each device
runs the one-device program on its L / D lanes (``over_devices``, a ``shard_map``): the
metrics equal one device's. A phase runs on the lanes due, which the host hands each
device as its own list of local indices (``local_lanes``). Lanes must divide evenly
over the devices (``check_lanes``): a padded lane would cost a whole lane's replay
buffer on its device for nothing.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from piekd_mjx import processes

LANES = 'lanes'  # the mesh axis the lane axis [L] is split along


def lane_mesh(num_devices: int, num_lanes: int) -> Mesh:
  """The mesh of the first ``num_devices`` devices on the ``LANES`` axis; 0: as many as
  divide ``num_lanes`` (every device when they do). Over several processes, as many of
  every process's devices (``_process_mesh``)."""
  by_process = processes.devices_by_process()
  if len(by_process) > 1:
    return _process_mesh(num_devices, num_lanes, by_process)
  devices = jax.devices()
  if num_devices < 0 or num_devices > len(devices):
    raise ValueError(f'--num_devices={num_devices} is invalid: this process has '
                     f'{len(devices)} {devices[0].platform} device(s); use 0 (as many as '
                     f'divide the lanes) to {len(devices)}')
  if not num_devices:
    num_devices = max(d for d in range(1, len(devices) + 1) if num_lanes % d == 0)
  return Mesh(np.array(devices[:num_devices]), (LANES,))


def _process_mesh(num_devices: int, num_lanes: int, by_process: list[list[jax.Device]]
                  ) -> Mesh:
  """The first d devices of every process, process by process (each holds a block of
  the lanes, so every process takes part in every program): d = ``num_devices`` / P
  for P processes (``by_process``: each one's devices), or for 0 the most that divide
  ``num_lanes`` into P d blocks."""
  count = len(by_process)
  most = min(len(local) for local in by_process)
  if num_lanes % count:
    raise ValueError(f'--num_processes={count}: the {num_lanes} lanes (seeds of the runs '
                     f'trained together) do not divide over {count} processes, each of '
                     'which must hold lanes; use a number of processes that divides them')
  if not num_devices:
    per = max(d for d in range(1, most + 1) if num_lanes % (count * d) == 0)
  elif num_devices % count or not 0 < num_devices // count <= most:
    raise ValueError(f'--num_devices={num_devices} is invalid over {count} processes of '
                     f'{most} device(s) each: use 0 or a multiple of {count} up to '
                     f'{count * most}')
  else:
    per = num_devices // count
  return Mesh(np.array([x for local in by_process for x in local[:per]]), (LANES,))


def check_lanes(num_lanes: int, mesh: Mesh) -> None:
  """Raises ValueError unless ``num_lanes`` divides over the mesh's devices."""
  if num_lanes % mesh.size:
    raise ValueError(f'--num_devices={mesh.size}: the {num_lanes} lanes (seeds of the '
                     f'runs trained together) do not divide over {mesh.size} devices; '
                     'use a number of devices that divides them, or seeds that divide '
                     'over the devices')


def check_run(num_devices: int, num_seeds: int) -> None:
  """Raises ValueError unless a run of ``num_seeds`` seeds (its lanes when alone) can
  split over ``num_devices`` (``lane_mesh``)."""
  check_lanes(num_seeds, lane_mesh(num_devices, num_seeds))


def spec(leaf: Any) -> PartitionSpec:
  """The lane axis (the first) split over the devices; a scalar on every device."""
  return PartitionSpec(LANES) if np.ndim(leaf) else PartitionSpec()


def specs(tree: Any) -> Any:
  """``spec`` of every leaf of ``tree``."""
  return jax.tree.map(spec, tree)


def shardings(tree: Any, mesh: Mesh) -> Any:
  """The ``NamedSharding`` of every leaf of ``tree`` on ``mesh``."""
  return jax.tree.map(lambda leaf: NamedSharding(mesh, spec(leaf)), tree)


def put(tree: Any, mesh: Mesh) -> Any:
  """``tree`` on ``mesh``, each leaf split along its lane axis."""
  return jax.device_put(tree, shardings(tree, mesh))


def over_devices(fn: Callable, mesh: Mesh, in_specs: Any, out_specs: Any) -> Callable:
  """``fn`` run by every device of ``mesh`` on its own block of each argument
  (``jax.shard_map``); ``fn`` sees the local shapes [L / D, ...]. Without the check of
  which values vary over the devices: MJX's solver loops mix a lane's values with
  constants in ways the check refuses, and nothing here is reduced over devices (the
  one result on every device, the step counter, is the input's plus a constant)."""
  return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                       check_vma=False)


def local_lanes(lanes: Sequence[int], num_lanes: int, mesh: Mesh) -> np.ndarray:
  """[D, m] int32: row d holds the local index on device d of each lane of ``lanes``
  that device d holds, in order, then -1s (m: the most any device holds)."""
  per_device = num_lanes // mesh.size
  rows = [[lane - d * per_device for lane in lanes if lane // per_device == d]
          for d in range(mesh.size)]
  width = max(1, max(len(row) for row in rows))
  out = np.full((mesh.size, width), -1, np.int32)
  for d, row in enumerate(rows):
    out[d, :len(row)] = row
  return out


def abstract(tree: Any, mesh: Mesh | None) -> Any:
  """The shapes and dtypes of ``tree`` (e.g. ``jax.eval_shape``'s), each with its
  sharding on ``mesh``; ``tree`` itself for one device (None)."""
  if mesh is None:
    return tree
  return jax.tree.map(lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s),
                      tree, shardings(tree, mesh))


def describe(mesh: Mesh | None) -> str:
  """Where the lanes train, for a run's first log line."""
  if mesh is None:
    return f'1 {jax.devices()[0].platform} device'
  ids = ', '.join(str(d.id) for d in mesh.devices.flat)
  hosts = len({d.process_index for d in mesh.devices.flat})
  where = f' of {hosts} processes' if hosts > 1 else ''
  return (f'{mesh.size} {mesh.devices.flat[0].platform} devices{where} ({ids}), the lanes '
          f'split over mesh axis {LANES!r}')
