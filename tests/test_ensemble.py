"""Tests of member selection and recent returns (piekd_mjx/ensemble.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from piekd_mjx import ensemble

K, M = 3, 5


def test_member_selection_is_uniform_over_episodes():
  num_episodes = 3000
  state = ensemble.init(jax.random.key(0), K, M)

  @jax.jit
  def run(state):
    def step(state, key):
      state = ensemble.record_step(state, jnp.bool_(True), jnp.float32(1.0), key)
      return state, state.acting
    return jax.lax.scan(step, state, jax.random.split(jax.random.key(1), num_episodes))

  final, acting = run(state)
  counts = np.bincount(np.asarray(acting), minlength=K)
  expected = num_episodes / K
  chi2 = np.sum((counts - expected) ** 2 / expected)
  assert chi2 < 13.8  # p = 0.001 for 2 degrees of freedom
  # num_selected counts the first draw and every later one.
  assert int(np.sum(final.num_selected)) == num_episodes + 1
  np.testing.assert_array_equal(
      final.num_selected, counts + np.eye(K, dtype=np.int32)[int(state.acting)])
  assert int(np.sum(final.num_episodes)) == num_episodes


@pytest.mark.parametrize('jit', [False, True])
def test_acting_member_kept_until_its_episode_ends(jit):
  record = jax.jit(ensemble.record_step) if jit else ensemble.record_step
  state = ensemble.init(jax.random.key(0), K, M)
  for i in range(20):
    new = record(state, jnp.bool_(False), jnp.float32(5.0), jax.random.key(i))
    assert int(new.acting) == int(state.acting)
    state = new
  np.testing.assert_array_equal(state.num_episodes, 0)


@pytest.mark.parametrize('jit', [False, True])
def test_recent_return_is_the_mean_of_the_last_m_returns(jit):
  record = jax.jit(ensemble.record_step) if jit else ensemble.record_step
  recent_returns = jax.jit(ensemble.recent_returns) if jit else ensemble.recent_returns
  episodes = {0: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], 1: [10.0, 20.0]}  # member 2: none
  state = ensemble.init(jax.random.key(0), K, M)
  key = jax.random.key(1)
  for k, returns in episodes.items():
    for r in returns:
      # A step inside the episode, then the step that ends it.
      state = record(state.replace(acting=jnp.int32(k)), jnp.bool_(False),
                     jnp.float32(-100.0), key)
      state = record(state.replace(acting=jnp.int32(k)), jnp.bool_(True),
                     jnp.float32(r), key)
  mean, has_return = recent_returns(state)
  np.testing.assert_allclose(mean[:2], [np.mean(episodes[0][-M:]), np.mean(episodes[1])],
                             rtol=1e-6)
  assert np.isnan(mean[2])
  np.testing.assert_array_equal(has_return, [True, True, False])
  np.testing.assert_array_equal(state.num_episodes, [7, 2, 0])


@pytest.mark.parametrize('jit', [False, True])
def test_no_recent_return_before_a_finished_episode(jit):
  recent_returns = jax.jit(ensemble.recent_returns) if jit else ensemble.recent_returns
  state = ensemble.init(jax.random.key(0), K, M)
  mean, has_return = recent_returns(state)
  assert np.all(np.isnan(mean)) and not np.any(has_return)
  for i in range(5):  # steps that end no episode, with a non-zero running return
    state = ensemble.record_step(state, jnp.bool_(False), jnp.float32(3.0 + i),
                                 jax.random.key(i))
  mean, has_return = recent_returns(state)
  assert np.all(np.isnan(mean)) and not np.any(has_return)
  # The first finished episode gives exactly its acting member an R_k.
  acting = int(state.acting)
  state = ensemble.record_step(state, jnp.bool_(True), jnp.float32(4.0), jax.random.key(9))
  mean, has_return = recent_returns(state)
  np.testing.assert_array_equal(has_return, np.arange(K) == acting)
  assert float(mean[acting]) == 4.0
