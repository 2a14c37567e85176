"""Ant: Gymnasium ``Ant-v5`` on MJX.

Observation (105): ========================================================
| index   | content                                                        |
|---------|----------------------------------------------------------------|
| 0-12    | qpos[2:]: torso z, torso quaternion (4), 8 hip/ankle angles    |
| 13-26   | qvel: torso linear (3) and angular (3) velocity, 8 joint vel.  |
| 27-104  | cfrc_ext[1:] of the 13 bodies, clipped to [-1, 1], row-major   |

Action (8): hip and ankle torques in [-1, 1] (ctrlrange).

Reward: forward (torso x-velocity, weight 1) + healthy (1 while healthy)
- ctrl 0.5·|a|² - contact 5e-4·|clip(cfrc_ext, -1, 1)|² (all bodies).
Terminates when the state is non-finite or torso z leaves [0.2, 1.0].
Reset: qpos += U(-0.1, 0.1), qvel += 0.1·N(0, 1). Frame skip 5 (dt 0.05 s).

Contacts: the legs are capsules on the floor under Gymnasium's pyramidal friction cone,
whose edges follow the contact frame; the physics is traced with MuJoCo C's
plane-capsule frame (``piekd_mjx.envs.contact``), which MJX's own collider does not
give a steep leg.
"""

import jax.numpy as jnp

from piekd_mjx.envs import base
from piekd_mjx.envs import contact


class Ant(contact.CContactFrame, base.MjxTask):
  xml_file = 'ant.xml'
  frame_skip = 5
  reset_noise_scale = 0.1
  qvel_noise = 'normal'
  uses_cfrc_ext = True
  metric_names = ('reward_forward', 'reward_ctrl', 'reward_contact', 'reward_survive',
                  'x_velocity', 'y_velocity')
  # --solver=capped: the smallest caps measured to keep parity (docs/TASKS.md).
  capped_solver = base.SolverOptions(iterations=8, ls_iterations=16, capped=True)

  forward_reward_weight = 1.0
  ctrl_cost_weight = 0.5
  contact_cost_weight = 5e-4
  healthy_reward = 1.0
  healthy_z_range = (0.2, 1.0)
  contact_force_range = (-1.0, 1.0)
  main_body = 1  # the torso

  def _contact_forces(self, data):
    return jnp.clip(base.cfrc_ext(data), *self.contact_force_range)

  def _observation(self, data):
    return jnp.concatenate([data.qpos[2:], data.qvel,
                            self._contact_forces(data)[1:].ravel()])

  def _reward_and_termination(self, data0, data, action, obs):
    xy_velocity = (data.xpos[self.main_body, :2] - data0.xpos[self.main_body, :2]) / self.dt
    state = base.state_vector(data)
    min_z, max_z = self.healthy_z_range
    healthy = jnp.isfinite(state).all() & (min_z <= state[2]) & (state[2] <= max_z)
    forward = self.forward_reward_weight * xy_velocity[0]
    survive = self.healthy_reward * healthy
    ctrl = base.control_cost(self.ctrl_cost_weight, action)
    contact = self.contact_cost_weight * jnp.sum(jnp.square(self._contact_forces(data)))
    reward = forward + survive - ctrl - contact
    metrics = {'reward_forward': forward, 'reward_ctrl': -ctrl, 'reward_contact': -contact,
               'reward_survive': survive, 'x_velocity': xy_velocity[0],
               'y_velocity': xy_velocity[1]}
    return reward, ~healthy, metrics
