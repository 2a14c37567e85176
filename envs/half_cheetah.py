"""HalfCheetah: Gymnasium ``HalfCheetah-v5`` on MJX.

Observation (17): ========================================================
| index | content                                                          |
|-------|------------------------------------------------------------------|
| 0-7   | qpos[1:]: root z, root angle, 6 thigh/shin/foot angles           |
| 8-16  | qvel: root x, z and angular velocity, 6 joint velocities         |

Action (6): back and front thigh/shin/foot torques in [-1, 1].

Reward: forward (root x-velocity, weight 1) - ctrl 0.1·|a|². Never terminates.
Reset: qpos += U(-0.1, 0.1), qvel += 0.1·N(0, 1). Frame skip 5 (dt 0.05 s).
"""

import jax.numpy as jnp

from piekd_mjx.envs import base


class HalfCheetah(base.MjxTask):
  xml_file = 'half_cheetah.xml'
  frame_skip = 5
  reset_noise_scale = 0.1
  qvel_noise = 'normal'
  metric_names = ('reward_forward', 'reward_ctrl', 'x_velocity')
  # --solver=capped: the smallest caps measured to keep parity (docs/TASKS.md).
  capped_solver = base.SolverOptions(iterations=4, ls_iterations=8, capped=True)
  offers_mujoco_c = True  # reads qpos and qvel alone

  forward_reward_weight = 1.0
  ctrl_cost_weight = 0.1

  def _observation(self, data):
    return jnp.concatenate([data.qpos[1:], data.qvel])

  def _reward_and_termination(self, data0, data, action, obs):
    x_velocity = (data.qpos[0] - data0.qpos[0]) / self.dt
    forward = self.forward_reward_weight * x_velocity
    ctrl = base.control_cost(self.ctrl_cost_weight, action)
    metrics = {'reward_forward': forward, 'reward_ctrl': -ctrl, 'x_velocity': x_velocity}
    return forward - ctrl, jnp.zeros((), bool), metrics
