"""Lanes: one program trains L lanes, each lane one seed of one run (leaves [L, ...]).

Runs whose per-step shapes agree (``keys.program_key``) train as the lanes of one
program; what else differs between them is per-lane data, ``Settings`` (SAC's scalars
and the phases' data), never a constant of the program. A run alone is the group of its
own S seeds.

The training program is written for one lane; this module is the one place that runs
it over many, with the CPU's adapters: ``over_lanes`` (a vmap, or a squeeze for one
lane, since a vmap over one element is not free on a CPU), ``in_batches`` (batches of
lanes one after another through a whole chunk: on a CPU one lane at a time is fastest)
and ``at_lanes`` (a phase on just the lanes that have one, reading and writing them in
place). With one lane per batch a lane's computation is the same whatever the other
lanes are, so a grouped lane equals the run trained alone, bit for bit.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from piekd_mjx import distill
from piekd_mjx import sac as sac_lib
from piekd_mjx.config import Config


@flax.struct.dataclass
class Settings:
  """What differs between the lanes of one program, as data: leaves [L] (or [] for a
  lane of its own)."""

  sac: sac_lib.Scalars
  phase: distill.PhaseScalars


def num_lanes(configs: Sequence[Config]) -> int:
  """L: every seed of every run."""
  return sum(config.num_seeds for config in configs)


def lane_slices(configs: Sequence[Config]) -> tuple[slice, ...]:
  """The lanes of each run, in order: run r holds lanes [start_r, start_r + S_r)."""
  starts = np.cumsum([0] + [config.num_seeds for config in configs])
  return tuple(slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:]))


def settings(configs: Sequence[Config], action_size: int) -> Settings:
  """The ``Settings`` of every lane [L]: each run's values, once per seed."""
  per_run = [Settings(sac=sac_lib.scalars(config, action_size),
                      phase=distill.phase_scalars(config)) for config in configs]
  counts = [config.num_seeds for config in configs]
  return jax.tree.map(lambda *x: np.repeat(np.stack(x), counts), *per_run)


def lane_keys(configs: Sequence[Config]) -> jax.Array:
  """The initial key of every lane [L, 2]: seed s of a run is fold_in(PRNGKey(seed), s),
  whatever else is in the group."""
  keys = [jax.random.fold_in(jax.random.PRNGKey(config.seed), s)
          for config in configs for s in range(config.num_seeds)]
  return jnp.stack(keys)


def over_lanes(fn: Callable, size: int) -> Callable:
  """``jax.vmap(fn)`` over the leading axis (of length ``size``) of every argument.

  For ``size == 1`` it calls ``fn`` on the arguments with that axis removed and puts
  the axis back on the results instead: the same computation, but a vmap over one
  element is not free on a CPU, where the batched solver loop selects its whole carry
  on every iteration (docs/BENCHMARKS.md).
  """
  if size != 1:
    return jax.vmap(fn)

  def squeezed(*args):
    out = fn(*jax.tree.map(lambda x: jax.lax.squeeze(x, (0,)), args))
    return jax.tree.map(lambda x: jax.lax.expand_dims(x, (0,)), out)

  return squeezed


def in_batches(fn: Callable, per_lane: Any, shared: Any, size: int, batch: int
               ) -> tuple[Any, Any, Any]:
  """``fn(per_lane part [b], shared, lanes [b]) -> (per_lane part, shared, out [b])``
  over the ``size`` lanes in batches of ``batch``, one after another.

  ``per_lane``'s leaves lead with [L]: each batch takes its slice once and writes it
  back once. ``shared`` (the replay buffers) is handed whole from batch to batch, to be
  indexed in place by lane. Returns the new per-lane and shared parts and ``out``
  [L, ...].
  """
  if batch == size:
    return fn(per_lane, shared, jnp.arange(size, dtype=jnp.int32))
  first_part = jax.tree.map(lambda x: x[:batch], per_lane)
  out_shape = jax.eval_shape(fn, first_part, shared, jnp.arange(batch, dtype=jnp.int32))[2]
  outs = jax.tree.map(lambda s: jnp.zeros((size,) + s.shape[1:], s.dtype), out_shape)

  def body(i, carry):
    per_lane, shared, outs = carry
    first = i * batch
    take = lambda x: jax.lax.dynamic_slice_in_dim(x, first, batch)
    put = lambda x, y: jax.lax.dynamic_update_slice_in_dim(x, y, first, 0)
    part, shared, out = fn(jax.tree.map(take, per_lane), shared,
                           first + jnp.arange(batch, dtype=jnp.int32))
    return jax.tree.map(put, per_lane, part), shared, jax.tree.map(put, outs, out)

  return jax.lax.fori_loop(0, size // batch, body, (per_lane, shared, outs))


def at_lanes(fn: Callable, written: Any, read: Any, shared: Any, lanes: jax.Array,
             batch: int) -> tuple[Any, Any]:
  """``fn(written [], read [], shared, lane) -> (written [], out)`` on the lanes
  ``lanes`` [n] only (a list that may end in -1s, which stand for no lane: their
  ``out`` rows are to be ignored).

  ``written`` and ``read`` have leaves [L]; only the rows of ``lanes`` are gathered,
  and only they are scattered back (into the donated arrays, in place): the other
  lanes are neither touched nor copied. ``batch == 1`` (the CPU's way, each lane's
  computation that of a lane alone) and a single lane run the gathered lanes one after
  another; otherwise they are one vmap. Returns the new ``written`` [L] and ``out``
  [n, ...].
  """
  take = lambda x: x[lanes]
  part_written, part_read = jax.tree.map(take, written), jax.tree.map(take, read)
  if batch != 1 and lanes.shape[0] > 1:
    new, out = jax.vmap(fn, in_axes=(0, 0, None, 0))(part_written, part_read, shared, lanes)
  else:
    one = lambda tree, i: jax.tree.map(lambda x: x[i], tree)
    out_shape = jax.eval_shape(fn, one(part_written, 0), one(part_read, 0), shared,
                               lanes[0])[1]
    outs = jax.tree.map(lambda s: jnp.zeros(lanes.shape + s.shape, s.dtype), out_shape)

    def body(i, carry):
      part, outs = carry
      new, out = fn(one(part, i), one(part_read, i), shared, lanes[i])
      part = jax.tree.map(lambda x, y: x.at[i].set(y), part, new)
      return part, jax.tree.map(lambda o, y: o.at[i].set(y), outs, out)

    # A trip count from the data: a loop of one known trip is inlined, and XLA then fuses
    # the gather into its readers, copying the [L] arrays whole (test_lanes reads this).
    count = jnp.sum(lanes >= 0)
    new, out = jax.lax.fori_loop(0, count, body, (part_written, outs))
  at = write_index(lanes, jax.tree.leaves(written)[0].shape[0])
  written = jax.tree.map(lambda x, y: x.at[at].set(y, mode='drop', unique_indices=True),
                         written, new)
  return written, out


def write_index(lanes: jax.Array, size: int) -> jax.Array:
  """``lanes`` [n] as the rows of a scatter into [size] with ``mode='drop'``: each -1
  (no lane) becomes a row of its own past the end, so that it writes nothing."""
  past = size + jnp.arange(lanes.shape[0], dtype=lanes.dtype)
  return jnp.where(lanes >= 0, lanes, past)
