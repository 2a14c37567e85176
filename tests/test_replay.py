"""Tests of the on-device replay ring buffer (piekd_mjx/replay.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from piekd_mjx import replay
from piekd_mjx.sac import Transition

OBS, ACT = 3, 2


def _example() -> Transition:
  return Transition(
      obs=jnp.zeros((OBS,)), action=jnp.zeros((ACT,)), reward=jnp.zeros(()),
      next_obs=jnp.zeros((OBS,)), termination=jnp.zeros(()), truncation=jnp.zeros(()))


def _numbered(start: int, n: int) -> Transition:
  """n transitions whose every field encodes its insertion index start..start+n-1."""
  i = jnp.arange(start, start + n, dtype=jnp.float32)  # [n]
  return Transition(
      obs=i[:, None] + jnp.arange(OBS) / 10.0,
      action=-i[:, None] - jnp.arange(ACT) / 10.0,
      reward=i + 0.5,
      next_obs=i[:, None] + 100.0 + jnp.arange(OBS),
      termination=(i % 2 == 0).astype(jnp.float32),
      truncation=(i % 3 == 0).astype(jnp.float32),
  )


def _stored_ids(buf: replay.Replay, state: replay.ReplayState) -> np.ndarray:
  rows = buf.get(state, jnp.arange(int(state.size)))
  return np.asarray(rows.reward - 0.5).astype(int)


@pytest.mark.parametrize('jit', [False, True], ids=['eager', 'jit'])
@pytest.mark.parametrize('k', [0, 3, 7])
def test_wrap_around_one_at_a_time(jit, k):
  capacity = 8
  buf = replay.make_replay(capacity, _example())
  add = jax.jit(buf.add) if jit else buf.add
  state = buf.init()
  for i in range(capacity + k):
    state = add(state, _numbered(i, 1))
  assert int(state.size) == capacity
  assert int(state.position) == k
  assert sorted(_stored_ids(buf, state)) == list(range(k, capacity + k))


@pytest.mark.parametrize('jit', [False, True], ids=['eager', 'jit'])
def test_batched_insert_crosses_the_boundary(jit):
  capacity = 8
  buf = replay.make_replay(capacity, _example())
  add = jax.jit(buf.add) if jit else buf.add
  state = add(buf.init(), _numbered(0, 6))
  assert (int(state.position), int(state.size)) == (6, 6)
  state = add(state, _numbered(6, 5))  # rows 6, 7, 0, 1, 2
  assert (int(state.position), int(state.size)) == (3, 8)
  np.testing.assert_array_equal(_stored_ids(buf, state), [8, 9, 10, 3, 4, 5, 6, 7])


def test_add_more_than_capacity_at_once_is_an_error():
  buf = replay.make_replay(4, _example())
  with pytest.raises(ValueError, match='at once'):
    buf.add(buf.init(), _numbered(0, 5))


def test_sample_only_returns_stored_rows():
  buf = replay.make_replay(32, _example())
  state = buf.add(buf.init(), _numbered(0, 5))
  batch = jax.jit(buf.sample, static_argnums=2)(state, jax.random.key(0), 16)
  assert batch.obs.shape == (16, OBS) and batch.reward.shape == (16,)
  ids = np.asarray(batch.reward - 0.5).astype(int)
  assert set(ids) <= set(range(5))
  assert len(set(ids)) > 1  # not stuck on one row


def test_fields_round_trip_exactly():
  buf = replay.make_replay(16, _example())
  transitions = _numbered(0, 6)
  state = buf.add(buf.init(), transitions)
  back = buf.get(state, jnp.arange(6))
  for name in ('obs', 'action', 'reward', 'next_obs', 'termination', 'truncation'):
    got, want = getattr(back, name), getattr(transitions, name)
    assert got.dtype == want.dtype, name
    np.testing.assert_array_equal(got, want, err_msg=name)
  # Termination and truncation are independent columns.
  assert not np.array_equal(back.termination, back.truncation)


def test_get_keeps_the_index_shape():
  buf = replay.make_replay(16, _example())
  state = buf.add(buf.init(), _numbered(0, 8))
  back = buf.get(state, jnp.arange(8).reshape(2, 4))
  assert back.obs.shape == (2, 4, OBS) and back.termination.shape == (2, 4)


def test_jit_and_eager_agree():
  buf = replay.make_replay(8, _example())
  add_jit = jax.jit(buf.add)
  eager, jitted = buf.init(), buf.init()
  for start, n in ((0, 3), (3, 4), (7, 1), (8, 6)):
    eager = buf.add(eager, _numbered(start, n))
    jitted = add_jit(jitted, _numbered(start, n))
  jax.tree.map(np.testing.assert_array_equal, eager, jitted)
  key = jax.random.key(3)
  jax.tree.map(np.testing.assert_array_equal, buf.sample(eager, key, 4),
               jax.jit(buf.sample, static_argnums=2)(jitted, key, 4))


def test_one_flat_array_and_bytes_per_transition():
  buf = replay.make_replay(8, _example())
  state = buf.init()
  width = 2 * OBS + ACT + 3
  assert state.data.shape == (8, width) and state.data.dtype == jnp.float32
  assert buf.bytes_per_transition == 4 * width


def test_add_at_and_sample_at_equal_add_and_sample_per_seed():
  # A stack of S = 3 buffers of capacity 4; seeds 2 and 0 get inserts (seed 1 none),
  # enough of them for the ring to wrap. The oracle is add / sample on each buffer alone.
  buf = replay.make_replay(4, _example())
  stack = jax.vmap(lambda _: buf.init())(jnp.arange(3))
  alone = [buf.init() for _ in range(3)]
  seeds = jnp.array([2, 0])
  add_at = jax.jit(buf.add_at)
  for t in range(6):
    rows = _numbered(10 * t, 2)  # seed 2 gets 10t, seed 0 gets 10t + 1
    stack = add_at(stack, seeds, rows)
    for i, seed in enumerate([2, 0]):
      alone[seed] = buf.add(alone[seed], jax.tree.map(lambda x, i=i: x[i:i + 1], rows))
  for seed in range(3):
    for got, want in zip(jax.tree.leaves(jax.tree.map(lambda x, s=seed: x[s], stack)),
                         jax.tree.leaves(alone[seed])):
      np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(_stored_ids(buf, alone[2]), [40, 50, 20, 30])
  keys = jax.random.split(jax.random.PRNGKey(1), 4).reshape(2, 2, 2)  # [b, J, 2]
  got = jax.jit(buf.sample_at, static_argnums=3)(stack, seeds, keys, 5)
  for i, seed in enumerate([2, 0]):
    for j in range(2):
      want = buf.sample(alone[seed], keys[i, j], 5)
      for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(g[i, j], w)
