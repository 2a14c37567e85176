"""Tests of evaluation (piekd_mjx/evaluate.py) on a stub task whose rewards, termination
and initial states are known: the deterministic action, termination, the time limit and
evaluation environments of its own."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from piekd_mjx import config as config_lib
from piekd_mjx import evaluate as evaluate_lib
from piekd_mjx import programs as programs_lib
from piekd_mjx import sac as sac_lib
from piekd_mjx.envs.base import State

S, K, E = 2, 2, 4
CONFIG = config_lib.Config(hidden_sizes=(8, 8))
LOW, HIGH = np.array([-2.0, 0.5], np.float32), np.array([2.0, 3.5], np.float32)
WEIGHTS = np.array([1.0, -0.7], np.float32)  # the 'action' reward is WEIGHTS . action
FIXED_START = np.array([0.3, -0.6], np.float32)
AFTER_END = 1000.0  # the 'alive' reward after the terminal step


class StubTask:
  """A task without physics, in the interface evaluation and training read.

  The observation at step t of an episode is x0 * (t + 1), x0 being FIXED_START or, with
  ``random_start``, U(0, 1)^2 drawn from the reset key. An episode terminates (``done``
  is 1 on that step only) at step ``end``, drawn from {1, ..., max_end} at reset
  (``max_end=0``: never). The reward of a step is, by ``reward``: 'action', WEIGHTS .
  action (in the task's control units); 'alive', 1 up to the terminal step and
  AFTER_END after it; 'start', x0[0].
  """

  observation_size = 2
  action_size = 2
  action_low = jnp.asarray(LOW)
  action_high = jnp.asarray(HIGH)

  def __init__(self, reward: str, random_start: bool = False, max_end: int = 0):
    self.reward = reward
    self.random_start = random_start
    self.max_end = max_end

  def reset(self, key: jax.Array) -> State:
    key_start, key_end = jax.random.split(key)
    x0 = (jax.random.uniform(key_start, (2,)) if self.random_start
          else jnp.asarray(FIXED_START))
    end = (jax.random.randint(key_end, (), 1, self.max_end + 1) if self.max_end
           else jnp.full((), 2**30, jnp.int32))
    zero = jnp.zeros((), jnp.float32)
    return State(pipeline_state={'x0': x0, 't': jnp.zeros((), jnp.int32), 'end': end},
                 obs=x0, reward=zero, done=zero)

  def step(self, state: State, action: jax.Array) -> State:
    p = state.pipeline_state
    t = p['t'] + 1
    reward = {'action': lambda: jnp.dot(jnp.asarray(WEIGHTS), action),
              'alive': lambda: jnp.where(t <= p['end'], 1.0, AFTER_END),
              'start': lambda: p['x0'][0]}[self.reward]()
    return state.replace(pipeline_state={**p, 't': t}, obs=p['x0'] * (t + 1),
                         reward=jnp.asarray(reward, jnp.float32),
                         done=(t == p['end']).astype(jnp.float32))


def _sac() -> sac_lib.Sac:
  return sac_lib.make_sac(CONFIG, StubTask.observation_size, StubTask.action_size)


def _actor_params(seed=0):
  """Independently initialised actors [S, K, ...]."""
  keys = jax.random.split(jax.random.key(seed), S * K)
  sac = _sac()
  params = jax.jit(jax.vmap(lambda k: sac.init(k, sac.default_scalars)))(keys).actor_params
  return jax.tree.map(lambda x: x.reshape((S, K) + x.shape[1:]), params)


def _evaluate(task, episode_length):
  return jax.jit(evaluate_lib.make_evaluate(task, _sac(), episode_length, E))


def test_action_is_tanh_of_the_mean_scaled_to_the_action_range():
  actor_params = _actor_params()
  length = 3
  returns = np.asarray(_evaluate(StubTask('action'), length)(actor_params,
                                                             jax.random.key(0)))
  assert returns.shape == (S, K, E)
  policy = jax.jit(_sac().policy)
  for s in range(S):
    for k in range(K):
      params = jax.tree.map(lambda x: x[s, k], actor_params)
      want = 0.0
      for t in range(length):
        mean, _ = policy(params, jnp.asarray(FIXED_START * (t + 1)))
        action = LOW + (np.tanh(np.asarray(mean, np.float64)) + 1.0) / 2.0 * (HIGH - LOW)
        want += float(WEIGHTS @ action)
      # Deterministic: every episode of the member, whatever its reset key.
      np.testing.assert_allclose(returns[s, k], want, rtol=1e-5, atol=1e-5)
  assert len(np.unique(returns[:, :, 0])) == S * K  # the members act differently


def test_return_stops_accumulating_at_termination():
  max_end, length = 5, 20
  evaluate = _evaluate(StubTask('alive', max_end=max_end), length)
  returns = np.asarray(evaluate(_actor_params(), jax.random.key(1)))
  # Each episode's return is its termination step: the terminal step's reward counts,
  # none after it, though ``done`` is 1 on that step only.
  np.testing.assert_array_equal(returns, np.round(returns))
  assert returns.min() >= 1 and returns.max() <= max_end
  # Episodes end at their own steps, not all at the first one.
  assert len(np.unique(returns)) >= 3


def test_time_limit_caps_an_episode():
  for length in (1, 7):
    evaluate = _evaluate(StubTask('alive'), length)  # never terminates
    np.testing.assert_array_equal(evaluate(_actor_params(), jax.random.key(2)), length)
  # Episodes that terminate before the limit keep their shorter returns.
  returns = np.asarray(_evaluate(StubTask('alive', max_end=8), 4)(
      _actor_params(), jax.random.key(3)))
  assert returns.max() == 4 and returns.min() < 4


def test_every_episode_starts_from_a_reset_of_its_own():
  length = 2
  evaluate = _evaluate(StubTask('start', random_start=True), length)
  starts = np.asarray(evaluate(_actor_params(), jax.random.key(4))) / length  # x0[0]
  assert len(np.unique(starts)) == S * K * E
  other = np.asarray(evaluate(_actor_params(), jax.random.key(5))) / length
  assert not np.any(np.isin(other, starts))


def test_trainer_evaluation_leaves_the_training_environments_alone():
  """Evaluation reads the members' actors and the step count only, starts its episodes
  from resets of keys apart from the training ones, and leaves the state usable."""
  length = 3
  config = config_lib.apply_variant(config_lib.Config(
      variant='ensemble_sac', num_seeds=S, hidden_sizes=(8, 8), batch_size=8,
      warmup_steps=8, replay_capacity=64, eval_episodes=E, episode_length=length))
  config.validate()
  trainer = programs_lib.make_trainer(config, StubTask('start', random_start=True))
  state = trainer.init()
  before = jax.tree.map(np.array, state)
  returns = np.asarray(trainer.evaluate(state))
  assert returns.shape == (S, config.ensemble_size, E)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(before)):
    np.testing.assert_array_equal(a, b)
  # The training environments' first observations are not among the evaluation's.
  starts = returns / length
  assert len(np.unique(starts)) == starts.size
  assert not np.any(np.isin(np.asarray(state.env_state.obs)[:, 0], starts))
  # Other training environments and training keys: the same evaluation.
  moved = state.replace(
      env_state=state.env_state.replace(obs=state.env_state.obs + 1.0,
                                        pipeline_state=jax.tree.map(
                                            lambda x: x + 1, state.env_state.pipeline_state)),
      key=jax.random.split(jax.random.key(9), S))
  np.testing.assert_array_equal(trainer.evaluate(moved), returns)
  # Another step: other evaluation episodes.
  later = np.asarray(trainer.evaluate(state.replace(step=state.step + 1)))
  assert not np.any(np.isin(later, returns))


@pytest.mark.parametrize('batch_size', [1, 2])
def test_episodes_in_groups_equal_all_at_once(batch_size):
  """The same episodes (reset keys), actions and returns, one at a time or in groups
  (up to the rounding of a batched matmul against an unbatched one)."""
  task = StubTask('action', random_start=True, max_end=6)
  params, key = _actor_params(3), jax.random.key(5)
  together = jax.jit(evaluate_lib.make_evaluate(task, _sac(), 8, E))(params, key)
  grouped = jax.jit(evaluate_lib.make_evaluate(task, _sac(), 8, E, batch_size))(params, key)
  np.testing.assert_allclose(grouped, together, rtol=1e-5, atol=1e-5)  # float32 rounding
  assert np.unique(np.asarray(together)).size == S * K * E  # every episode its own
  with pytest.raises(ValueError, match='--eval_batch=3 is invalid: must divide'):
    evaluate_lib.make_evaluate(task, _sac(), 8, E, 3)
