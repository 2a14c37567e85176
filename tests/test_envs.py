"""The task registry, the brax interface and the training episode wrapper."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from piekd_mjx import envs
from piekd_mjx.envs import wrappers


def test_names_and_unknown_task():
  assert envs.names() == ('ant', 'halfcheetah', 'hopper', 'humanoid', 'inverted_pendulum',
                          'walker2d')
  with pytest.raises(ValueError, match='unknown task .*valid: ant, halfcheetah'):
    envs.make('cartpole')
  with pytest.raises(ValueError, match="--solver='slow' is invalid: must be one of "
                     'faithful, fast, capped'):
    envs.make('hopper', solver='slow')


def test_every_task_offers_the_solvers_said_to_need_no_task_class():
  # resources.check_env accepts these without importing the task (and MJX).
  for name in (*envs.names(), *envs.STUBS):
    for solver in envs.EVERY_TASK_SOLVERS:
      envs.make_class(name).solver_options(solver)


@pytest.mark.parametrize('name', envs.names())
def test_mujoco_c_is_offered_where_the_task_reads_qpos_and_qvel_alone(name, task_cache):
  """MuJoCo C's step hands back qpos, qvel and the solver's warm start only
  (envs/mujoco_c.py): with every other field of the data NaN, a task that offers it still
  observes, rewards and terminates in finite numbers; one that does not, reads a NaN."""
  from mujoco import mjx  # pylint: disable=g-import-not-at-top
  task = task_cache(name)
  kept = ('qpos', 'qvel', 'ctrl')

  def poisoned(path, x):
    if any(getattr(p, 'name', None) in kept for p in path):
      return x
    return jnp.full_like(x, jnp.nan) if jnp.issubdtype(x.dtype, jnp.floating) else x

  data = mjx.make_data(task.mjx_model)
  data = data.replace(qpos=task.init_qpos + 0.01, qvel=task.init_qvel + 0.02)
  data = jax.tree_util.tree_map_with_path(poisoned, data)
  action = jnp.full((task.action_size,), 0.1)
  # pylint: disable=protected-access
  obs = task._observation(data)
  reward, done, metrics = task._reward_and_termination(data, data, action, obs)
  # pylint: enable=protected-access
  finite = all(bool(jnp.all(jnp.isfinite(jnp.asarray(x, jnp.float32))))
               for x in (obs, reward, done, *metrics.values()))
  assert finite == envs.make_class(name).offers_mujoco_c


def test_the_package_imports_mjx_only_when_a_task_is_asked_for():
  # The command lines check --env and answer bad input without MJX's seconds of import.
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  code = ('import sys; from piekd_mjx import envs, resources; '
          'resources.check_env("hopper"); resources.check_env("stub", "fast"); '
          'assert "mujoco.mjx" not in sys.modules and "brax" not in sys.modules; '
          'envs.make_class("stub"); assert "mujoco.mjx" in sys.modules')
  subprocess.run([sys.executable, '-c', code], check=True, timeout=120)


def test_sizes_match_gymnasium():
  import gymnasium as gym  # pylint: disable=g-import-not-at-top
  for name in envs.names():
    cls = envs.make_class(name)
    env = gym.make(envs.GYMNASIUM_IDS[name]).unwrapped
    assert cls.frame_skip == env.frame_skip, name
    assert cls.reset_noise_scale == env._reset_noise_scale, name  # pylint: disable=protected-access
  task = envs.make('inverted_pendulum')
  assert (task.observation_size, task.action_size) == (4, 1)
  np.testing.assert_array_equal(task.action_low, [-3.0])
  np.testing.assert_array_equal(task.action_high, [3.0])


def _signature(tree):
  return jax.tree.map(lambda x: (x.shape, x.dtype, getattr(x, 'weak_type', False)), tree)


def test_reset_and_step_agree_in_types_and_do_not_retrace(task_cache):
  """reset's outputs have step's shapes, dtypes and weak types, so a jitted step
  compiles once for both."""
  task = task_cache('inverted_pendulum')
  traces = []

  def step(state, action):
    traces.append(1)
    return task.step(state, action)

  step = jax.jit(step)
  state0 = jax.jit(task.reset)(jax.random.PRNGKey(0))
  state1 = step(state0, jnp.zeros(task.action_size))
  state2 = step(state1, jnp.ones(task.action_size))
  assert len(traces) == 1
  assert _signature(state0) == _signature(state1) == _signature(state2)
  # reset starts from the state sample_initial_state draws for the same key.
  qpos, qvel = task.sample_initial_state(jax.random.PRNGKey(0))
  np.testing.assert_array_equal(state0.pipeline_state.qpos, qpos)
  np.testing.assert_array_equal(state0.pipeline_state.qvel, qvel)
  assert not np.array_equal(qpos, task.init_qpos)


def test_done_is_termination_and_reset_to_sets_state(task_cache):
  task = task_cache('inverted_pendulum')
  qpos = jnp.array([0.0, 0.19]), jnp.array([0.0, 5.0])
  state = task.reset_to(*qpos)
  np.testing.assert_allclose(state.obs, [0.0, 0.19, 0.0, 5.0], atol=1e-7)
  state = jax.jit(task.step)(state, jnp.zeros(1))
  assert state.done == 1.0 and state.reward == 0.0  # the pole passed 0.2 rad


def test_wrapper_truncates_resets_fresh_and_keeps_last_obs(task_cache):
  """The wrapper's time limit and restarts, on the physics-free ``stub`` (the wrapper,
  not the physics, is the subject; the suite's inverted_pendulum runs take it through MJX)."""
  task = task_cache('stub')
  env = wrappers.TrainingWrapper(task, episode_length=5)
  step = jax.jit(env.step)
  state = jax.jit(env.reset)(jax.random.PRNGKey(1))
  starts = [np.asarray(state.obs)]
  for t in range(1, 16):
    prev = state
    state = step(state, jnp.zeros(1))
    ended = t % 5 == 0
    assert float(state.info['truncation']) == float(ended)
    assert float(state.done) == 0.0  # zero force keeps the pole up for 5 steps
    assert int(state.info['steps']) == (0 if ended else t % 5)
    if ended:
      # next_obs is the episode's last observation, obs the next episode's first.
      assert not np.allclose(state.info['next_obs'], state.obs)
      assert float(state.info['completed_return']) == 5.0
      assert float(state.info['episode_return']) == 0.0
      starts.append(np.asarray(state.obs))
    else:
      np.testing.assert_array_equal(state.info['next_obs'], state.obs)
    del prev
  # Every episode starts from a freshly drawn state, not a cached first one.
  assert len({tuple(s) for s in starts}) == len(starts) == 4


def test_wrapper_scales_actions_to_control_range(task_cache):
  env = wrappers.TrainingWrapper(task_cache('inverted_pendulum'))
  np.testing.assert_allclose(env.scale_action(jnp.array([-1.0])), [-3.0])
  np.testing.assert_allclose(env.scale_action(jnp.array([0.5])), [1.5])


@pytest.mark.skipif(
    jax.__version_info__ >= (0, 10),
    reason="brax 0.14.2's trainers call jax.device_put_replicated, removed in jax 0.10")
def test_brax_trainer_runs_our_task(task_cache):
  """brax's own PPO trainer and wrappers run a task of ours. brax's evaluator is left
  out (it would compile the task's step once more, about 35 s here): the episode
  statistics come from the training environment through brax's wrappers."""
  from brax.training.agents.ppo import train as ppo  # pylint: disable=g-import-not-at-top

  progress = []
  ppo.train(
      environment=task_cache('inverted_pendulum'), num_timesteps=64, episode_length=16,
      num_envs=4, batch_size=4, num_minibatches=2, unroll_length=4,
      num_updates_per_batch=1, num_evals=2, run_evals=False, log_training_metrics=True,
      training_metrics_steps=16, seed=0,
      progress_fn=lambda step, metrics: progress.append((step, dict(metrics))))
  step, metrics = progress[-1]  # brax's last report: the training losses
  assert step == 64
  assert np.isfinite(metrics['training/total_loss'])
  # Episodes ended (the pendulum falls under a random policy), with their returns,
  # in the report of the training environment's episode statistics before it.
  episodes = [m for _, m in progress if 'episode/sum_reward' in m]
  assert episodes and 0 < episodes[-1]['episode/length'] <= 16
  assert episodes[-1]['episode/sum_reward'] > 0.0


def test_batched_restart_equals_per_env_step(task_cache):
  """The trainer's batched path (step_without_restart, then restart_ended) gives
  exactly what each environment's own step gives (on ``stub``, as above)."""
  env = wrappers.TrainingWrapper(task_cache('stub'), episode_length=3)
  states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.PRNGKey(2), 2))
  # Env 0 is two steps from its time limit, env 1 is at the start of an episode.
  states.info['steps'] = jnp.array([2, 0], jnp.int32)
  actions = jnp.zeros((2, 1))

  @jax.jit
  def batched(states, actions):
    stepped = jax.vmap(env.step_without_restart)(states, actions)
    return env.restart_ended(stepped)

  expected = jax.jit(jax.vmap(env.step))(states, actions)
  got = batched(states, actions)
  np.testing.assert_array_equal(got.info['truncation'], [1.0, 0.0])
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(a, b)


def test_scan_select_runs_a_while_loop_in_a_static_number_of_trips():
  # The capped solver's loop: while cond: body, as a scan of max_iter trips whose trips
  # after cond fails keep their input; stopped at max_iter where cond still holds.
  from piekd_mjx.envs import capped  # pylint: disable=g-import-not-at-top
  cond = lambda c: c[1] > 1.0
  body = lambda c: (c[0] + 1, c[1] / 3.0)
  for start in (0.5, 2.0, 80.0, 1e6):
    init = (jnp.int32(0), jnp.float32(start))
    want = jax.lax.while_loop(cond, body, init)
    got = capped.scan_select(cond, body, init, 20)
    assert [int(got[0]), float(got[1])] == [int(want[0]), float(want[1])]
  stopped = capped.scan_select(cond, body, (jnp.int32(0), jnp.float32(1e6)), 4)
  assert int(stopped[0]) == 4
  jaxpr = str(jax.make_jaxpr(lambda x: capped.scan_select(cond, body, (0, x), 7))(1.0))
  assert 'scan[' in jaxpr and 'while[' not in jaxpr and 'cond[' not in jaxpr
