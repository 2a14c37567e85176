"""The shared replay buffer: an on-device ring of transitions (docs/ALGORITHM.md §1-2).

One buffer of capacity C per seed, shared by the K members; SAC minibatches are drawn
uniformly with replacement among the stored transitions (docs/ALGORITHM.md §1), and distillation
reads contiguous slices of it (docs/ALGORITHM.md §3).

Three pure functions over a ``ReplayState``, shaped like optax's
GradientTransformation: ``init() -> state``, ``add(state, transitions) -> state``,
``sample(state, key, batch_size) -> Transition``, plus ``get(state, indices)``; and
``add_at`` / ``sample_at``, the same over chosen lanes of a stack of buffers [L], which
the trainer uses so that a batch of lanes reads and writes its buffers in place.

Layout: every field of a transition is flattened into ONE float32 row of width W, so
the buffer is a single array ``data [C, W]`` and an insert of n rows is a single
in-place update of that one array at rows (position + arange(n)) % C, which XLA
performs in place inside a loop (one array per field is copied whole at each step of
a ``lax.scan``). The static ``Layout``, derived from an example transition, says where
each field lives in a row and restores its shape and dtype on the way out.
Termination and truncation are stored as separate columns.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class ReplayState:
  """The ring buffer of one lane (the caller stacks lanes on a leading [L] axis)."""

  data: jax.Array  # [C, W] float32, one flattened transition per row
  position: jax.Array  # [] int32, the row the next insert writes first
  size: jax.Array  # [] int32, number of rows stored, at most C


@dataclasses.dataclass(frozen=True)
class FieldSlice:
  """Where one leaf of the transition pytree lives in a row."""

  start: int  # first column
  width: int  # number of columns, prod(shape)
  shape: tuple[int, ...]  # the leaf's shape for one transition
  dtype: np.dtype  # the leaf's dtype, restored on read


@dataclasses.dataclass(frozen=True)
class Layout:
  """Static description of a row: the transition's tree structure and its leaves."""

  treedef: Any  # jax PyTreeDef of the transition
  fields: tuple[FieldSlice, ...]  # one per leaf, in tree-flatten order
  width: int  # W, the row width in float32 columns

  @classmethod
  def from_example(cls, example: Any) -> Layout:
    """Builds the layout from ONE transition (no leading batch axis)."""
    leaves, treedef = jax.tree.flatten(example)
    fields, start = [], 0
    for leaf in leaves:
      shape = tuple(np.shape(leaf))
      width = math.prod(shape)
      fields.append(FieldSlice(start, width, shape, np.dtype(jnp.result_type(leaf))))
      start += width
    return cls(treedef=treedef, fields=tuple(fields), width=start)

  def flatten(self, transitions: Any, batch_shape: tuple[int, ...]) -> jax.Array:
    """Transitions with leading ``batch_shape`` -> rows [*batch_shape, W] float32."""
    leaves = self.treedef.flatten_up_to(transitions)
    columns = []
    for leaf, field in zip(leaves, self.fields):
      leaf = jnp.asarray(leaf)
      if leaf.shape != batch_shape + field.shape:
        raise ValueError(f'transition leaf has shape {leaf.shape}; expected '
                         f'{batch_shape + field.shape}')
      columns.append(leaf.reshape(batch_shape + (field.width,)).astype(jnp.float32))
    return jnp.concatenate(columns, axis=-1)

  def unflatten(self, rows: jax.Array) -> Any:
    """Rows [..., W] -> transitions with the same leading axes."""
    batch_shape = rows.shape[:-1]
    leaves = [
        rows[..., f.start:f.start + f.width].reshape(batch_shape + f.shape).astype(f.dtype)
        for f in self.fields
    ]
    return self.treedef.unflatten(leaves)


class Replay(NamedTuple):
  """The pure functions of a ring buffer of fixed capacity and layout.

  Attributes:
    init: () -> ReplayState, empty (zeros, position 0, size 0).
    add: (state, transitions with leading [n]) -> state; n <= capacity, static.
    sample: (state, key, batch_size) -> transitions [B, ...], uniform with replacement
      among the ``size`` stored rows (rows of zeros if the buffer is empty).
    get: (state, indices [...] int) -> transitions [..., ...] at those rows (indices
      are clipped to [0, C); rows past ``size`` hold zeros).
    add_at: (states [L], lanes [b] int, transitions [b, ...]) -> states: ``add`` of
      one transition to each buffer ``lanes[i]`` of a stack of L buffers, as one
      in-place scatter into ``data [L, C, W]`` (the lanes distinct).
    sample_at: (states [L], lanes [b], keys [b, J], batch_size) -> transitions
      [b, J, B, ...]: ``sample(states[lanes[i]], keys[i, j], batch_size)`` for every
      i, j, as one gather from the stack.
    get_at: (states [L], lane [], indices [...]) -> ``get(states[lane], indices)``,
      a gather from the stack (the buffer is not sliced).
    sample_indices: (key, size [], batch_size) -> the rows [B] int32 that ``sample``
      reads: uniform with replacement over [0, max(size, 1)).
    capacity: C.
    layout: the static row layout.
    bytes_per_transition: bytes of one stored row, 4 * W.
  """

  init: Callable[[], ReplayState]
  add: Callable[[ReplayState, Any], ReplayState]
  sample: Callable[[ReplayState, jax.Array, int], Any]
  get: Callable[[ReplayState, jax.Array], Any]
  add_at: Callable[[ReplayState, jax.Array, Any], ReplayState]
  sample_at: Callable[[ReplayState, jax.Array, jax.Array, int], Any]
  get_at: Callable[[ReplayState, jax.Array, jax.Array], Any]
  sample_indices: Callable[[jax.Array, jax.Array, int], jax.Array]
  capacity: int
  layout: Layout
  bytes_per_transition: int


def make_replay(capacity: int, example: Any) -> Replay:
  """Builds a ring buffer of ``capacity`` rows for transitions shaped like ``example``.

  Args:
    capacity: C, the number of transitions kept.
    example: one transition (e.g. a ``sac.Transition`` without a batch axis); only its
      tree structure, leaf shapes and dtypes are used.

  Returns:
    A ``Replay`` of pure, jit-able functions.
  """
  if capacity <= 0:
    raise ValueError(f'replay capacity must be positive, got {capacity}')
  layout = Layout.from_example(example)

  def init() -> ReplayState:
    return ReplayState(
        data=jnp.zeros((capacity, layout.width), jnp.float32),
        position=jnp.zeros((), jnp.int32),
        size=jnp.zeros((), jnp.int32),
    )

  def add(state: ReplayState, transitions: Any) -> ReplayState:
    leaves = jax.tree.leaves(transitions)
    n = int(np.shape(leaves[0])[0])
    if n > capacity:
      raise ValueError(f'cannot add {n} transitions at once to a buffer of {capacity}')
    rows = layout.flatten(transitions, (n,))  # [n, W]
    if n == 1:
      data = jax.lax.dynamic_update_slice(
          state.data, rows, (state.position, jnp.zeros((), jnp.int32)))
    else:
      rows_at = (state.position + jnp.arange(n, dtype=jnp.int32)) % capacity  # [n]
      data = state.data.at[rows_at].set(rows, mode='promise_in_bounds',
                                        unique_indices=True)
    return ReplayState(
        data=data,
        position=(state.position + n) % capacity,
        size=jnp.minimum(state.size + n, capacity).astype(jnp.int32),
    )

  def add_at(states: ReplayState, lanes: jax.Array, transitions: Any) -> ReplayState:
    rows = layout.flatten(transitions, lanes.shape)  # [b, W]
    positions = states.position[lanes]  # [b]
    data = states.data.at[lanes, positions].set(rows, mode='promise_in_bounds',
                                                unique_indices=True)
    return ReplayState(
        data=data,
        position=states.position.at[lanes].set((positions + 1) % capacity),
        size=states.size.at[lanes].set(
            jnp.minimum(states.size[lanes] + 1, capacity).astype(jnp.int32)))

  def sample_indices(key: jax.Array, size: jax.Array, batch_size: int) -> jax.Array:
    return jax.random.randint(key, (batch_size,), 0, jnp.maximum(size, 1),
                              dtype=jnp.int32)  # [B]

  def sample_at(states: ReplayState, lanes: jax.Array, keys: jax.Array,
                batch_size: int) -> Any:
    draw = lambda key, size: sample_indices(key, size, batch_size)
    rows_at = jax.vmap(jax.vmap(draw, in_axes=(0, None)))(keys, states.size[lanes])
    rows = states.data.at[lanes[:, None, None], rows_at].get(mode='clip')  # [b, J, B, W]
    return layout.unflatten(rows)

  def get(state: ReplayState, indices: jax.Array) -> Any:
    rows = jnp.take(state.data, indices, axis=0, mode='clip')  # [..., W]
    return layout.unflatten(rows)

  def get_at(states: ReplayState, lane: jax.Array, indices: jax.Array) -> Any:
    rows = states.data.at[lane, indices].get(mode='clip')  # [..., W]
    return layout.unflatten(rows)

  def sample(state: ReplayState, key: jax.Array, batch_size: int) -> Any:
    return get(state, sample_indices(key, state.size, batch_size))

  return Replay(
      init=init, add=add, sample=sample, get=get, add_at=add_at, sample_at=sample_at,
      get_at=get_at, sample_indices=sample_indices, capacity=capacity, layout=layout,
      bytes_per_transition=4 * layout.width)
