"""Parity of the MJX tasks with Gymnasium's ``*-v5`` environments on MuJoCo C.

Along a Gymnasium trajectory of random actions, every visited physical state is put
into the MJX task with ``reset_to``, the same action is applied, and the next
observation, reward, each reward term and termination are compared. Gymnasium's own
state is refreshed with ``set_state`` (``mj_forward``) before each step, so both sides
start every step from the same fully computed state.

Used by ``tests/test_parity.py`` and ``benchmarks/parity.py`` (docs/TASKS.md).
"""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from piekd_mjx import envs as tasks


@dataclasses.dataclass(frozen=True)
class Reference:
  """Steps of Gymnasium (MuJoCo C, float64) from recorded states; leading axis [N]."""

  qpos: np.ndarray  # [N, nq]
  qvel: np.ndarray  # [N, nv]
  action: np.ndarray  # [N, A], in the control range
  obs: np.ndarray  # [N, O], the observation after the step
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
  rows = {k: [] for k in ('qpos', 'qvel', 'action', 'obs', 'reward', 'terminated')}
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

  Returns ``(start_obs, next_state)``: the observation ``reset_to`` gives for each
  reference state [N, O], and the state after the step.
  """

  def one(qpos, qvel, action):
    start = task.reset_to(qpos, qvel)
    return start.obs, task.step(start, action)

  out = jax.jit(jax.vmap(one))(jnp.asarray(ref.qpos, jnp.float32),
                               jnp.asarray(ref.qvel, jnp.float32),
                               jnp.asarray(ref.action, jnp.float32))
  return jax.tree.map(np.asarray, out)


def errors(task: tasks.MjxTask, ref: Reference) -> dict[str, float]:
  """The largest error of each compared quantity over the reference's steps.

  ``obs`` is scaled, max |ours - ref| / (1 + |ref|) over every entry (observations mix
  angles with contact forces in the hundreds); the reward and each reward term are
  absolute errors; ``termination_mismatches`` counts steps whose termination differs.
  With a trajectory reference, ``reset_obs`` is the scaled error of ``reset_to``'s
  observation of the first state (Gymnasium's reset state, unnormalised free-joint
  quaternions included) against the observation Gymnasium's reset returned.
  """
  start_obs, out = mjx_steps(task, ref)
  errs = {'obs': _scaled_error(out.obs, ref.obs),
          'reward': float(np.max(np.abs(out.reward - ref.reward))),
          'termination_mismatches': float(np.sum((out.done > 0) != ref.terminated))}
  if ref.reset_obs is not None:
    errs['reset_obs'] = _scaled_error(start_obs[0], ref.reset_obs)
  for k, v in ref.terms.items():
    errs[k] = float(np.max(np.abs(out.metrics[k] - v)))
  return errs


def _scaled_error(ours: np.ndarray, ref: np.ndarray) -> float:
  return float(np.max(np.abs(ours - ref) / (1.0 + np.abs(ref))))
