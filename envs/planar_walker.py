"""What Hopper-v5 and Walker2d-v5 share: planar walkers with a healthy reward.

Observation: qpos[1:] (root z, root angle, joint angles), then qvel clipped to
[-10, 10]. Reward: forward (root x-velocity, weight 1) + healthy (1 while healthy)
- ctrl 1e-3·|a|². Reset: qpos and qvel += U(-5e-3, 5e-3). Frame skip 4 (dt 0.008 s).
"""

import jax.numpy as jnp

from piekd_mjx.envs import base


class PlanarWalker(base.MjxTask):
  frame_skip = 4
  reset_noise_scale = 5e-3
  qvel_noise = 'uniform'
  offers_mujoco_c = True  # reads qpos and qvel alone
  metric_names = ('reward_forward', 'reward_ctrl', 'reward_survive', 'x_velocity')

  forward_reward_weight = 1.0
  ctrl_cost_weight = 1e-3
  healthy_reward = 1.0

  def _is_healthy(self, data) -> jnp.ndarray:
    raise NotImplementedError

  def _observation(self, data):
    return jnp.concatenate([data.qpos[1:], jnp.clip(data.qvel, -10.0, 10.0)])

  def _reward_and_termination(self, data0, data, action, obs):
    x_velocity = (data.qpos[0] - data0.qpos[0]) / self.dt
    healthy = self._is_healthy(data)
    forward = self.forward_reward_weight * x_velocity
    survive = self.healthy_reward * healthy
    ctrl = base.control_cost(self.ctrl_cost_weight, action)
    metrics = {'reward_forward': forward, 'reward_ctrl': -ctrl, 'reward_survive': survive,
               'x_velocity': x_velocity}
    return forward + survive - ctrl, ~healthy, metrics
