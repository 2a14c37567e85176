"""Parity of every task with Gymnasium's ``*-v5`` environment on MuJoCo C.

Tolerances (see docs/TASKS.md for the measured errors): ``obs`` is the scaled error
max |ours - ref| / (1 + |ref|); ``reward`` bounds the absolute error of the reward and
of every reward term. Each bound is far below the size of any reward term it guards
(e.g. Hopper's control cost 1e-3·|a|² is ~1e-3 for random actions, its bound 1e-4), so
a missing or mis-weighted term fails.

Ant's pyramidal friction cone follows the contact frame, which MJX's own plane-capsule
collider builds differently from MuJoCo C for a steep leg; the Ant tests also draw
states with a steep leg on the floor and compare the contact frames themselves.
"""

import jax.numpy as jnp
import mujoco
from mujoco.mjx._src import collision_driver
from mujoco.mjx._src.types import GeomType
import numpy as np
import pytest

from piekd_mjx import envs
from piekd_mjx.envs import contact
from piekd_mjx.envs import parity

# name -> (obs bound, reward bound), every task with solver='faithful' on the
# Gymnasium model as it ships.
CASES = {
    'inverted_pendulum': (1e-5, 1e-5),
    'hopper': (1e-4, 1e-4),
    'walker2d': (2e-3, 1e-4),
    'halfcheetah': (2e-3, 1e-4),
    'ant': (2e-3, 1e-4),
    'humanoid': (2e-3, 5e-4),
}
# Steps per check; the Ant checks all use this many states, so they share one program.
NUM_STEPS = 48
# Bound on the scaled error of the first observation, from Gymnasium's reset state.
RESET_OBS_BOUND = 1e-5
# Bound on each entry of an MJX contact frame against MuJoCo C's (float32 vs float64).
FRAME_BOUND = 1e-4


def _assert_within_bounds(name, task, errs):
  obs_bound, reward_bound = CASES[name]
  assert errs['termination_mismatches'] == 0, errs
  assert errs['obs'] <= obs_bound, errs
  assert errs['state'] <= obs_bound, errs  # qpos and qvel, hidden parts included
  for term in ['reward', *task.metric_names]:
    assert errs[term] <= reward_bound, (term, errs)


@pytest.mark.parametrize('name', sorted(CASES))
def test_step_matches_gymnasium(name, task_cache):
  """Each step's observation, reward, reward terms and termination; and the first
  observation from Gymnasium's reset state (unnormalised quaternions included)."""
  task = task_cache(name)
  ref = parity.gymnasium_reference(name, NUM_STEPS, seed=7)
  errs = parity.errors(task, ref)
  _assert_within_bounds(name, task, errs)
  assert errs['reset_obs'] <= RESET_OBS_BOUND, errs


# The tasks that offer --solver=capped; each compiles its step again, so the suite
# checks the two smallest and the rest run under -m slow.
CAPPED = [pytest.param(name, marks=[] if name in ('hopper', 'inverted_pendulum')
                       else [pytest.mark.slow])
          for name in sorted(CASES) if envs.make_class(name).capped_solver is not None]


@pytest.mark.parametrize('name', CAPPED)
def test_capped_solver_step_matches_gymnasium(name, task_cache):
  """The task's capped solver (static trip counts, piekd_mjx.envs.capped) within the
  faithful solver's bounds, hidden state included (docs/TASKS.md)."""
  task = task_cache(name, 'capped')
  assert task.solver.capped
  errs = parity.errors(task, parity.gymnasium_reference(name, NUM_STEPS, seed=7))
  _assert_within_bounds(name, task, errs)


@pytest.mark.parametrize('name', [n for n in sorted(CASES) if envs.make_class(n).offers_warp])
def test_warp_step_matches_gymnasium(name, task_cache):
  """MuJoCo Warp's implementation of MJX (--solver=warp, here on the CPU) within the
  faithful solver's bounds, hidden state included (docs/TASKS.md)."""
  from piekd_mjx.envs import base  # pylint: disable=g-import-not-at-top
  if base.warp_missing():
    pytest.skip(base.warp_missing())
  task = task_cache(name, 'warp')
  errs = parity.errors(task, parity.gymnasium_reference(name, NUM_STEPS, seed=7))
  _assert_within_bounds(name, task, errs)
  assert errs['reset_obs'] <= RESET_OBS_BOUND, errs


MUJOCO_C = [n for n in sorted(CASES) if envs.make_class(n).offers_mujoco_c]


@pytest.mark.parametrize('name', MUJOCO_C)
def test_mujoco_c_step_matches_gymnasium(name, task_cache):
  """--solver=mujoco_c is Gymnasium's own step but for float32 states between steps
  and the solver's warm start after a reset: within a tenth of the faithful solver's
  bounds, hidden state included (docs/TASKS.md)."""
  task = task_cache(name, 'mujoco_c')
  errs = parity.errors(task, parity.gymnasium_reference(name, NUM_STEPS, seed=7))
  obs_bound, reward_bound = CASES[name]
  assert errs['termination_mismatches'] == 0, errs
  assert errs['obs'] <= obs_bound / 10 and errs['state'] <= obs_bound / 10, errs
  for term in ['reward', *task.metric_names]:
    assert errs[term] <= reward_bound / 10, (term, errs)
  assert errs['reset_obs'] <= RESET_OBS_BOUND, errs


def test_the_mujoco_c_stepper_owns_its_data_whatever_thread_calls_it(task_cache):
  """XLA calls the stepper from its worker threads and drops their Python state after
  each call; an MjData kept per thread was freed then and segfaulted inside MuJoCo. The
  stepper's pool keeps it: after a call from a thread that has ended, the next call
  (from this thread) reuses the same MjData."""
  import threading  # pylint: disable=g-import-not-at-top
  from piekd_mjx.envs import mujoco_c  # pylint: disable=g-import-not-at-top
  task = task_cache('hopper', 'mujoco_c')
  stepper = mujoco_c.Stepper(task.mj_model, task.frame_skip)
  model = stepper.mj_model
  state = np.zeros((2, model.nq + 2 * model.nv + 1), np.float32)
  state[:, :model.nq] = mujoco.MjData(model).qpos
  ctrl = np.zeros((2, model.nu), np.float32)
  results = []
  thread = threading.Thread(target=lambda: results.append(stepper.host_step(state, ctrl)))
  thread.start()
  thread.join()
  # pylint: disable=protected-access
  assert stepper._pool.qsize() == 1
  pooled = stepper._take()
  stepper._pool.put(pooled)
  again = stepper.host_step(state, ctrl)
  assert stepper._pool.qsize() == 1 and stepper._take() is pooled
  # pylint: enable=protected-access
  np.testing.assert_array_equal(results[0], again)
  assert again[0, model.nq + 2 * model.nv] == np.float32(stepper.frame_skip * model.opt.timestep)


def test_a_mujoco_c_trajectory_in_a_scan_is_gymnasiums(task_cache):
  """200 steps of hopper in a ``lax.scan``, vmapped over two copies: the solver's warm
  start carried between steps as C carries it, so the trajectory stays on Gymnasium's
  (float32 states: its error grows slowly, not the MJX solver's 1e-4 per step)."""
  import gymnasium as gym  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  task = task_cache('hopper', 'mujoco_c')
  env = gym.make(envs.GYMNASIUM_IDS['hopper']).unwrapped
  env.reset(seed=3)
  actions = np.random.default_rng(3).uniform(-1, 1, (200, 3))
  start = (env.data.qpos.copy(), env.data.qvel.copy())
  want = []
  for action in actions:
    env.step(action)
    want.append(np.concatenate([env.data.qpos, env.data.qvel]))
  env.close()

  def trajectory(qpos, qvel):
    def one(state, action):
      state = task.step(state, action)
      return state, jnp.concatenate([state.pipeline_state.qpos, state.pipeline_state.qvel])
    return jax.lax.scan(one, task.reset_to(qpos, qvel), jnp.asarray(actions, jnp.float32))[1]

  got = jax.jit(jax.vmap(trajectory))(*(jnp.asarray(np.stack([x, x]), jnp.float32)
                                       for x in start))
  np.testing.assert_array_equal(got[0], got[1])
  error = np.abs(np.asarray(got[0], np.float64) - np.asarray(want)) / (1 + np.abs(want))
  assert error.max() < 1e-4, error.max()


def test_ant_steep_leg_matches_mujoco_c(task_cache):
  """States with a leg within 30° of vertical on the floor: every contact's frame
  matches MuJoCo C's (``mj_forward``'s ``contact.frame``), and the step matches
  Gymnasium under the standard bounds."""
  task = task_cache('ant')
  qpos, qvel = parity.steep_capsule_states('ant', NUM_STEPS, seed=11)
  ref = parity.gymnasium_reference('ant', NUM_STEPS, seed=11, states=(qpos, qvel))
  start, out = parity.mjx_steps(task, ref)
  ours = start.pipeline_state._impl.contact  # pylint: disable=protected-access
  model = task.mj_model
  data = mujoco.MjData(model)
  steep_tangents = []
  for i in range(NUM_STEPS):
    data.qpos[:], data.qvel[:] = qpos[i], qvel[i]
    mujoco.mj_forward(model, data)
    assert data.ncon > 0
    for c in data.contact[:data.ncon]:
      same_pair = np.flatnonzero((ours.geom[i] == [c.geom1, c.geom2]).all(axis=1))
      k = same_pair[np.argmin(np.linalg.norm(ours.pos[i, same_pair] - c.pos, axis=1))]
      np.testing.assert_allclose(ours.pos[i, k], c.pos, atol=1e-5)
      np.testing.assert_allclose(ours.frame[i, k].ravel(), c.frame, atol=FRAME_BOUND)
      if parity._projection_norm(model, data, c) < 0.5:  # pylint: disable=protected-access
        steep_tangents.append(c.frame[3:6].copy())
  # Every state has a steep leg on the floor; C's first tangent there follows the leg,
  # mostly away from the world y axis that MJX's own collider would take.
  steep_tangents = np.asarray(steep_tangents)
  assert len(steep_tangents) >= NUM_STEPS
  assert np.mean(np.abs(steep_tangents[:, 1]) < 0.9) > 0.5
  _assert_within_bounds('ant', task, parity.errors(task, ref, steps=(start, out)))


def test_c_contact_frame_matches_mujoco_c_for_any_axis():
  """``contact.c_contact_frame`` against MuJoCo C's frame of a free capsule on a plane,
  for axes exactly along the normal (C's fallback tangent), within 1e-9 of it, steep,
  flat and random; ``c_plane_capsule`` installs the collider only inside the context."""
  model = mujoco.MjModel.from_xml_string(
      '<mujoco><worldbody><geom type="plane" size="5 5 .1"/><body><freejoint/>'
      '<geom type="capsule" size=".05 .2"/></body></worldbody></mujoco>')
  data = mujoco.MjData(model)
  rng = np.random.default_rng(0)
  axes = [[0, 0, 1], [0, 0, -1], [1e-9, 0, 1], [0, -1e-9, 1], [0.3, 0.2, 1],
          [0.3, -0.2, -1], [1, 1, 0.01], *rng.normal(size=(8, 3))]
  for axis in axes:
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    quat = np.zeros(4)
    mujoco.mju_quatZ2Vec(quat, axis)
    data.qpos[:] = [0, 0, 0.2 * abs(axis[2]) + 0.049, *quat]
    mujoco.mj_forward(model, data)
    assert data.ncon >= 1
    c_axis = data.geom_xmat[1].reshape(3, 3)[:, 2]
    frame = contact.c_contact_frame(jnp.asarray(data.contact.frame[0, :3], jnp.float32),
                                    jnp.asarray(c_axis, jnp.float32))
    np.testing.assert_allclose(np.asarray(frame).ravel(), data.contact.frame[0], atol=1e-6)
  table = collision_driver._COLLISION_FUNC  # pylint: disable=protected-access
  key = (GeomType.PLANE, GeomType.CAPSULE)
  stock = table[key]
  with contact.c_plane_capsule():
    assert table[key] is contact.plane_capsule
  assert table[key] is stock and stock is not contact.plane_capsule


@pytest.mark.parametrize('name', sorted(CASES))
def test_reset_noise_matches_gymnasium(name, task_cache):
  """Reset noise (``sample_initial_state``, which ``reset`` starts from; see
  tests/test_envs.py): bounded like Gymnasium's and with the same spread."""
  import gymnasium as gym  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  task = task_cache(name)
  n = 2000
  qpos, qvel = jax.jit(jax.vmap(task.sample_initial_state))(
      jax.random.split(jax.random.PRNGKey(3), n))
  qpos = np.asarray(qpos) - np.asarray(task.init_qpos)
  qvel = np.asarray(qvel) - np.asarray(task.init_qvel)
  env = gym.make(envs.GYMNASIUM_IDS[name]).unwrapped
  gym_qpos, gym_qvel = [], []
  for seed in range(n):
    env.reset(seed=seed)
    gym_qpos.append(env.data.qpos - env.init_qpos)
    gym_qvel.append(env.data.qvel - env.init_qvel)
  gym_qpos, gym_qvel = np.asarray(gym_qpos), np.asarray(gym_qvel)
  scale = task.reset_noise_scale
  assert np.all(np.abs(qpos) <= scale + 1e-6)  # float32 rounding of init + noise
  if task.qvel_noise == 'uniform':
    assert np.all(np.abs(qvel) <= scale + 1e-6)
  for ours, theirs in ((qpos, gym_qpos), (qvel, gym_qvel)):
    # Per-coordinate spread within 10% of Gymnasium's (2000 samples each).
    np.testing.assert_allclose(ours.std(0), theirs.std(0), rtol=0.1)
    np.testing.assert_allclose(ours.mean(0), 0.0, atol=0.1 * scale)
