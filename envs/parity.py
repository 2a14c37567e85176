"""Parity of the MJX tasks with Gymnasium's ``*-v5`` environments on MuJoCo C.

Along a Gymnasium trajectory of random actions, every visited physical state is put
into the MJX task with ``reset_to``, the same action is applied, and the next
observation, reward, each reward term and termination are compared. Gymnasium's own
state is refreshed with ``set_state`` (``mj_forward``) before each step, so both sides
start every step from the same fully computed state.

``steep_capsule_states`` draws states that a random-action trajectory seldom visits: a
capsule within 30° of the floor's normal touching the floor, where MJX's own
plane-capsule collider and MuJoCo C choose different contact frames (docs/TASKS.md).

Used by ``tests/test_parity.py`` and ``benchmarks/parity.py`` (docs/TASKS.md).
"""

from __future__ import annotations

import dataclasses
import functools

import gymnasium as gym
import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from piekd_mjx import envs as tasks
from piekd_mjx.envs import base


@dataclasses.dataclass(frozen=True)
class Reference:
  """Steps of Gymnasium (MuJoCo C, float64) from recorded states; leading axis [N]."""

  qpos: np.ndarray  # [N, nq]
  qvel: np.ndarray  # [N, nv]
  action: np.ndarray  # [N, A], in the control range
  obs: np.ndarray  # [N, O], the observation after the step
  next_qpos: np.ndarray  # [N, nq], the physical state after the step
  next_qvel: np.ndarray  # [N, nv]
  reward: np.ndarray  # [N]
  terminated: np.ndarray  # [N] bool
  terms: dict[str, np.ndarray]  # reward terms by Gymnasium's info key, each [N]
  # The observation Gymnasium's reset returned for the first state [O]; None when the
  # steps start from given states.
  reset_obs: np.ndarray | None = None


def gymnasium_reference(name: str, num_steps: int, seed: int = 0,
                        states: tuple[np.ndarray, np.ndarray] | None = None,
                        cone: str | None = None) -> Reference:
  """Runs Gymnasium's version of task ``name`` for ``num_steps`` random actions.

  With ``states`` (qpos [N, nq], qvel [N, nv]) the steps start from those states
  instead of following a trajectory. ``cone`` ('pyramidal' or 'elliptic') overrides
  the model's friction cone, for comparing with a task built with the same override.
  """
  env = gym.make(tasks.GYMNASIUM_IDS[name]).unwrapped
  if cone is not None:
    env.model.opt.cone = {'pyramidal': 0, 'elliptic': 1}[cone]
  reset_obs, _ = env.reset(seed=seed)
  rng = np.random.default_rng(seed)
  low, high = env.action_space.low, env.action_space.high
  task_metrics = tasks.make_class(name).metric_names
  rows = {k: [] for k in ('qpos', 'qvel', 'action', 'obs', 'next_qpos', 'next_qvel',
                          'reward', 'terminated')}
  terms = {k: [] for k in task_metrics}
  for t in range(num_steps):
    if states is not None:
      env.set_state(states[0][t], states[1][t])
    else:
      env.set_state(env.data.qpos.copy(), env.data.qvel.copy())
    action = rng.uniform(low, high).astype(np.float64)
    rows['qpos'].append(env.data.qpos.copy())
    rows['qvel'].append(env.data.qvel.copy())
    obs, reward, terminated, _, info = env.step(action)
    rows['action'].append(action)
    rows['obs'].append(obs)
    rows['next_qpos'].append(env.data.qpos.copy())
    rows['next_qvel'].append(env.data.qvel.copy())
    rows['reward'].append(reward)
    rows['terminated'].append(terminated)
    for k in task_metrics:
      terms[k].append(info[k])
    if terminated and states is None:
      env.reset(seed=seed + t + 1)
  env.close()
  arrays = {k: np.asarray(v) for k, v in rows.items()}
  return Reference(terms={k: np.asarray(v, np.float64) for k, v in terms.items()},
                   reset_obs=None if states is not None else np.asarray(reset_obs), **arrays)


def mjx_steps(task: tasks.MjxTask, ref: Reference):
  """The MJX task's steps from the reference's states and actions, batched.

  Returns ``(start, next_state)``: the state ``reset_to`` gives for each reference
  state and the state after the step, each with a leading axis [N].
  """
  out = _steps_program(task)(jnp.asarray(ref.qpos, jnp.float32),
                             jnp.asarray(ref.qvel, jnp.float32),
                             jnp.asarray(ref.action, jnp.float32))
  return jax.tree.map(np.asarray, out)


@functools.cache
def _steps_program(task: tasks.MjxTask):
  """One jitted program per task, so calls with the same number of states share it."""

  def one(qpos, qvel, action):
    start = task.reset_to(qpos, qvel)
    return start, task.step(start, action)

  return jax.jit(jax.vmap(one))


def errors(task: tasks.MjxTask, ref: Reference, steps=None) -> dict[str, float]:
  """The largest error of each compared quantity over the reference's steps.

  ``steps`` is ``mjx_steps(task, ref)`` where the caller has it already.
  ``obs`` is scaled, max |ours - ref| / (1 + |ref|) over every entry (observations mix
  angles with contact forces in the hundreds), and so is ``state``, of the whole
  physical state after the step (``qpos`` and ``qvel``); the reward and each reward term are
  absolute errors; ``termination_mismatches`` counts steps whose termination differs.
  With a trajectory reference, ``reset_obs`` is the scaled error of ``reset_to``'s
  observation of the first state (Gymnasium's reset state, unnormalised free-joint
  quaternions included) against the observation Gymnasium's reset returned.
  """
  start, out = mjx_steps(task, ref) if steps is None else steps
  state = np.concatenate([out.pipeline_state.qpos, out.pipeline_state.qvel], -1)
  errs = {'obs': _scaled_error(out.obs, ref.obs),
          'state': _scaled_error(state, np.concatenate([ref.next_qpos, ref.next_qvel], -1)),
          'reward': float(np.max(np.abs(out.reward - ref.reward))),
          'termination_mismatches': float(np.sum((out.done > 0) != ref.terminated))}
  if ref.reset_obs is not None:
    errs['reset_obs'] = _scaled_error(start.obs[0], ref.reset_obs)
  for k, v in ref.terms.items():
    errs[k] = float(np.max(np.abs(out.metrics[k] - v)))
  return errs


def steep_capsule_states(name: str, num_states: int, seed: int = 0,
                         max_tilt_deg: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
  """States (qpos [N, nq], qvel [N, nv]) of task ``name`` in which a capsule within
  ``max_tilt_deg`` of the floor's normal touches the floor, drawn with MuJoCo C.

  For a task with a free root over a floor plane (Ant): the root is tilted up to 20°
  about a random horizontal axis and turned about the vertical, the hinges are drawn
  up to 20° beyond their ranges, and the root is lowered until the lowest geom is 0-5 mm
  into the floor; velocities are 0.1·N(0, 1), Ant's reset noise. A draw is kept when MuJoCo C
  reports a contact of a capsule that steep.
  """
  model = mujoco.MjModel.from_xml_path(base.gymnasium_asset(tasks.make_class(name).xml_file))
  data = mujoco.MjData(model)
  if model.jnt_type[0] != mujoco.mjtJoint.mjJNT_FREE:
    raise ValueError(f'{name} has no free root joint to place')
  rng = np.random.default_rng(seed)
  hinges = np.flatnonzero(model.jnt_type == mujoco.mjtJoint.mjJNT_HINGE)
  margin = np.deg2rad(20.0)
  geoms = np.flatnonzero(model.geom_type != mujoco.mjtGeom.mjGEOM_PLANE)
  max_projection = np.sin(np.deg2rad(max_tilt_deg))
  qposes, qvels = [], []
  while len(qposes) < num_states:
    qpos = model.qpos0.copy()
    tilt_axis = np.array([*rng.normal(size=2), 0.0])
    tilt, yaw = np.zeros(4), np.zeros(4)
    mujoco.mju_axisAngle2Quat(tilt, tilt_axis / np.linalg.norm(tilt_axis),
                              rng.uniform(0.0, margin))
    mujoco.mju_axisAngle2Quat(yaw, np.array([0.0, 0.0, 1.0]), rng.uniform(-np.pi, np.pi))
    mujoco.mju_mulQuat(qpos[3:7], tilt, yaw)
    low, high = model.jnt_range[hinges].T
    qpos[model.jnt_qposadr[hinges]] = rng.uniform(low - margin, high + margin)
    qpos[:3] = 0.0
    data.qpos[:] = qpos
    mujoco.mj_kinematics(model, data)
    qpos[2] = -min(_lowest_point(model, data, g) for g in geoms) - rng.uniform(0.0, 5e-3)
    qvel = 0.1 * rng.normal(size=model.nv)
    data.qpos[:], data.qvel[:] = qpos, qvel
    mujoco.mj_forward(model, data)
    if any(_projection_norm(model, data, c) < max_projection for c in data.contact):
      qposes.append(qpos)
      qvels.append(qvel)
  return np.asarray(qposes), np.asarray(qvels)


def _lowest_point(model: mujoco.MjModel, data: mujoco.MjData, geom: int) -> float:
  """The lowest world z of a sphere or capsule geom."""
  radius, half_length = model.geom_size[geom, :2]
  if model.geom_type[geom] == mujoco.mjtGeom.mjGEOM_SPHERE:
    half_length = 0.0
  axis_z = data.geom_xmat[geom, 8]
  return float(data.geom_xpos[geom, 2] - abs(axis_z) * half_length - radius)


def _projection_norm(model: mujoco.MjModel, data: mujoco.MjData, con) -> float:
  """The norm of a capsule contact's capsule axis projected onto the contact's tangent
  plane (1 for a capsule lying flat, 0 along the normal); inf for other contacts."""
  capsule = [g for g in (con.geom1, con.geom2)
             if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_CAPSULE]
  if not capsule:
    return np.inf
  normal, axis = con.frame[:3], data.geom_xmat[capsule[0]].reshape(3, 3)[:, 2]
  return float(np.linalg.norm(axis - normal * (normal @ axis)))


def _scaled_error(ours: np.ndarray, ref: np.ndarray) -> float:
  return float(np.max(np.abs(ours - ref) / (1.0 + np.abs(ref))))
