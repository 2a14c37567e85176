"""Tests of the networks and the one-member SAC update (piekd_mjx/{networks,sac}.py)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.stats import norm

from piekd_mjx import networks
from piekd_mjx import sac
from piekd_mjx.config import Config

OBS, ACT, BATCH = 3, 2, 8
CONFIG = Config(hidden_sizes=(8, 8), batch_size=BATCH, warmup_steps=BATCH)


def _batch(key, batch_size=BATCH, obs_size=OBS, action_size=ACT) -> sac.Transition:
  keys = jax.random.split(key, 4)
  return sac.Transition(
      obs=jax.random.normal(keys[0], (batch_size, obs_size)),
      action=jax.random.uniform(keys[1], (batch_size, action_size), minval=-1, maxval=1),
      reward=jax.random.normal(keys[2], (batch_size,)),
      next_obs=jax.random.normal(keys[3], (batch_size, obs_size)),
      termination=jnp.zeros((batch_size,)),
      truncation=jnp.zeros((batch_size,)),
  )


def _assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


# -- networks ----------------------------------------------------------------------------


def test_tanh_log_det_matches_float64_oracle():
  u = np.linspace(-30.0, 30.0, 601)
  oracle = -2.0 * np.log(np.cosh(u))  # log(1 - tanh(u)^2) = log sech(u)^2, in float64
  got = networks.tanh_log_det_jacobian(jnp.asarray(u, jnp.float32))
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, oracle, rtol=1e-5, atol=1e-5)


def test_sample_action_log_prob_change_of_variables():
  key_mean, key_std, key_sample = jax.random.split(jax.random.key(0), 3)
  mean = 0.5 * jax.random.normal(key_mean, (64, ACT))
  log_std = jax.random.uniform(key_std, (64, ACT), minval=-1.5, maxval=-0.5)
  action, log_prob = networks.sample_action(mean, log_std, key_sample)
  assert action.shape == (64, ACT) and log_prob.shape == (64,)
  assert np.all(np.abs(action) < 1.0)
  # Oracle: density of u = arctanh(a) under N(mean, std) times |du/da| = 1/(1 - a^2).
  a = np.asarray(action, np.float64)
  u = np.arctanh(a)
  oracle = np.sum(norm.logpdf(u, np.asarray(mean, np.float64),
                              np.exp(np.asarray(log_std, np.float64)))
                  - np.log(1.0 - a ** 2), axis=-1)
  np.testing.assert_allclose(log_prob, oracle, rtol=1e-4, atol=1e-4)


def test_deterministic_action_is_tanh_of_mean():
  mean = jnp.array([[-3.0, 0.0, 0.4]])
  np.testing.assert_allclose(networks.deterministic_action(mean), np.tanh(mean))


def test_network_shapes_and_log_std_clip():
  s = sac.make_sac(dataclasses.replace(CONFIG, log_std_min=-0.01, log_std_max=0.01),
                   OBS, ACT)
  state = s.init(jax.random.key(0), s.default_scalars)
  batch = _batch(jax.random.key(1))
  mean, log_std = s.policy(state.actor_params, 100.0 * batch.obs)
  assert mean.shape == log_std.shape == (BATCH, ACT)
  assert np.all(np.abs(log_std) <= 0.01)
  assert s.q_values(state.critic_params, batch.obs, batch.action).shape == (2, BATCH)
  assert s.act(state.actor_params, batch.obs, jax.random.key(2)).shape == (BATCH, ACT)
  np.testing.assert_allclose(s.act_deterministic(state.actor_params, batch.obs),
                             np.tanh(s.policy(state.actor_params, batch.obs)[0]), rtol=1e-6)
  # The two critic heads are initialised independently.
  q = s.q_values(state.critic_params, batch.obs, batch.action)
  assert not np.allclose(q[0], q[1])


def test_init_same_seed_same_state_different_seed_differs():
  s = sac.make_sac(CONFIG, OBS, ACT)
  a, b, c = (s.init(jax.random.key(k), s.default_scalars) for k in (0, 0, 1))
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert not np.allclose(a.actor_params['params']['MLP_0']['dense_0']['kernel'],
                         c.actor_params['params']['MLP_0']['dense_0']['kernel'])
  jax.tree.map(np.testing.assert_array_equal, a.critic_params, a.target_critic_params)
  assert float(jnp.exp(a.log_alpha)) == pytest.approx(CONFIG.init_alpha)


# -- the update --------------------------------------------------------------------------


def test_update_jit_and_eager_agree():
  s = sac.make_sac(CONFIG, OBS, ACT)
  state = s.init(jax.random.key(0), s.default_scalars)
  batch, key = _batch(jax.random.key(1)), jax.random.key(2)
  eager = s.update(state, batch, key, s.default_scalars)
  jitted = jax.jit(s.update)(state, batch, key, s.default_scalars)
  _assert_trees_close(eager, jitted)
  assert set(eager[1]) == {'sac/critic_loss', 'sac/actor_loss', 'sac/alpha_loss',
                           'sac/alpha', 'sac/entropy', 'sac/q_mean'}


def test_update_checks_ranks():
  s = sac.make_sac(CONFIG, OBS, ACT)
  state = s.init(jax.random.key(0), s.default_scalars)
  batch = _batch(jax.random.key(1)).replace(reward=jnp.zeros((BATCH, 1)))
  with pytest.raises(ValueError, match='reward'):
    s.update(state, batch, jax.random.key(2), s.default_scalars)


def test_target_uses_termination_not_truncation():
  s = sac.make_sac(CONFIG, OBS, ACT)
  state = s.init(jax.random.key(0), s.default_scalars)
  base = _batch(jax.random.key(1))
  ones = jnp.ones((BATCH,))
  terminated = base.replace(termination=ones)
  truncated = base.replace(truncation=ones)
  key = jax.random.key(2)
  td_target = jax.jit(s.td_target)
  y_base, y_term, y_trunc = (td_target(state, b, key, s.default_scalars)
                             for b in (base, terminated, truncated))
  np.testing.assert_array_equal(y_term, base.reward)  # no bootstrap after termination
  np.testing.assert_array_equal(y_trunc, y_base)  # truncation bootstraps
  assert not np.allclose(y_base, base.reward)
  # The same holds for the loss the update minimises.
  update = jax.jit(s.update)
  loss = {name: float(update(state, b, key, s.default_scalars)[1]['sac/critic_loss'])
          for name, b in (('base', base), ('term', terminated), ('trunc', truncated))}
  assert loss['trunc'] == loss['base']
  assert loss['term'] != loss['base']


def test_vmapped_members_equal_a_python_loop():
  num_members = 3
  s = sac.make_sac(CONFIG, OBS, ACT)
  keys = jax.random.split(jax.random.key(0), 3 * num_members).reshape(3, num_members)
  states = jax.vmap(s.init, in_axes=(0, None))(keys[0], s.default_scalars)  # [K, ...]
  batches = jax.vmap(_batch)(keys[1])  # [K, B, ...]
  update = jax.jit(s.update)
  vmapped = jax.jit(jax.vmap(s.update, in_axes=(0, 0, 0, None)))(
      states, batches, keys[2], s.default_scalars)
  for k in range(num_members):
    member = jax.tree.map(lambda x: x[k], (states, batches, keys[2]))
    looped = update(*member, s.default_scalars)
    _assert_trees_close(jax.tree.map(lambda x: x[k], vmapped), looped)
  # Independently initialised members.
  kernels = states.actor_params['params']['MLP_0']['dense_0']['kernel']  # [K, O, H]
  assert not np.allclose(kernels[0], kernels[1])


def test_target_critic_moves_by_tau():
  config = dataclasses.replace(CONFIG, tau=0.1)
  s = sac.make_sac(config, OBS, ACT)
  state = s.init(jax.random.key(0), s.default_scalars)
  new_state, _ = jax.jit(s.update)(state, _batch(jax.random.key(1)), jax.random.key(2),
                                   s.default_scalars)
  expected = optax.incremental_update(
      new_state.critic_params, state.target_critic_params, config.tau)
  _assert_trees_close(new_state.target_critic_params, expected, rtol=1e-6, atol=1e-7)
  moved = jax.tree.map(lambda a, b: not np.allclose(a, b),
                       new_state.target_critic_params, state.target_critic_params)
  assert any(jax.tree.leaves(moved))


@pytest.mark.parametrize('scale, direction', [(5.0, -1), (-5.0, +1)])
def test_alpha_moves_towards_the_target_entropy(scale, direction):
  # scale 5: target entropy -10, far below the policy's -> alpha decreases;
  # scale -5: target +10, above any entropy on (-1, 1)^2 -> alpha increases.
  config = dataclasses.replace(CONFIG, target_entropy_scale=scale)
  s = sac.make_sac(config, OBS, ACT)
  state = s.init(jax.random.key(0), s.default_scalars)
  new_state, metrics = jax.jit(s.update)(state, _batch(jax.random.key(1)),
                                         jax.random.key(2), s.default_scalars)
  target_entropy = float(s.default_scalars.target_entropy)
  assert target_entropy == -scale * ACT
  assert np.sign(float(metrics['sac/entropy']) - target_entropy) == -direction
  assert np.sign(float(new_state.log_alpha - state.log_alpha)) == direction


def test_repeated_updates_fit_the_critic():
  # 1-D regression: every transition terminates, so the critic target is the reward.
  config = dataclasses.replace(CONFIG, hidden_sizes=(16, 16), critic_lr=1e-2)
  s = sac.make_sac(config, 1, 1)
  key_obs, key_action, key_init = jax.random.split(jax.random.key(0), 3)
  obs = jax.random.uniform(key_obs, (16, 1), minval=-1, maxval=1)
  action = jax.random.uniform(key_action, (16, 1), minval=-1, maxval=1)
  batch = sac.Transition(
      obs=obs, action=action, reward=jnp.sin(3.0 * obs[:, 0]) + action[:, 0],
      next_obs=obs, termination=jnp.ones((16,)), truncation=jnp.zeros((16,)))

  @jax.jit
  def fit(state):
    def step(state, key):
      state, metrics = s.update(state, batch, key, s.default_scalars)
      return state, metrics['sac/critic_loss']
    return jax.lax.scan(step, state, jax.random.split(jax.random.key(1), 200))[1]

  losses = fit(s.init(key_init, s.default_scalars))  # [200]
  assert float(losses[-1]) < 0.2 * float(losses[0])
