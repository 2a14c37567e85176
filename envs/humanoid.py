"""Humanoid: Gymnasium ``Humanoid-v5`` on MJX.

Observation (348): =======================================================
| index   | content                                                        |
|---------|----------------------------------------------------------------|
| 0-21    | qpos[2:]: torso z, torso quaternion (4), 17 joint angles       |
| 22-44   | qvel: torso linear (3) and angular (3) velocity, 17 joint vel. |
| 45-174  | cinert[1:]: 13 bodies × 10 (com-based inertia)                 |
| 175-252 | cvel[1:]: 13 bodies × 6 (com-based velocity)                   |
| 253-269 | qfrc_actuator[6:]: 17 actuator forces in joint space           |
| 270-347 | cfrc_ext[1:]: 13 bodies × 6 external contact forces (unclipped)|

Action (17): joint motor controls in [-0.4, 0.4] (ctrlrange).

Reward: forward (x-velocity of the centre of mass, weight 1.25) + healthy (5 while
healthy) - ctrl 0.1·|ctrl|² - contact min(5e-7·|cfrc_ext|², 10) (all bodies).
Terminates when torso z leaves (1.0, 2.0).
Reset: qpos and qvel += U(-0.01, 0.01). Frame skip 5 (dt 0.015 s).

Solver: Gymnasium's model asks for MuJoCo's PGS solver, which MJX does not have (MJX
has CG and Newton). This task uses Newton, which solves the same convex constraint
problem (primal instead of dual) and converges to the same forces up to the solver
tolerance, with the model's iteration limits. The parity errors this leaves against
PGS on MuJoCo C are measured in ``tests/test_parity.py`` and listed in docs/TASKS.md.

Contacts: the physics is traced with MuJoCo C's plane-capsule contact frame
(``piekd_mjx.envs.contact``), as Ant's is: a limb within 30° of the floor's normal gets
another first tangent from MJX's own collider, which turns the pyramidal cone's edges.
"""

import jax.numpy as jnp
import mujoco

from piekd_mjx.envs import base
from piekd_mjx.envs import contact


class Humanoid(contact.CContactFrame, base.MjxTask):
  xml_file = 'humanoid.xml'
  frame_skip = 5
  reset_noise_scale = 1e-2
  qvel_noise = 'uniform'
  uses_cfrc_ext = True
  metric_names = ('reward_survive', 'reward_forward', 'reward_ctrl', 'reward_contact',
                  'x_velocity', 'y_velocity')
  # --solver=capped: the smallest caps measured to keep parity (docs/TASKS.md).
  capped_solver = base.SolverOptions(iterations=4, ls_iterations=8, capped=True)

  forward_reward_weight = 1.25
  ctrl_cost_weight = 0.1
  contact_cost_weight = 5e-7
  contact_cost_range = (-float('inf'), 10.0)
  healthy_reward = 5.0
  healthy_z_range = (1.0, 2.0)

  def _adapt_model(self, mj_model):
    mj_model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON

  def _mass_center(self, data):
    mass = self.mjx_model.body_mass
    return (mass @ data.xipos / jnp.sum(mass))[:2]

  def _observation(self, data):
    return jnp.concatenate([data.qpos[2:], data.qvel, base.cinert(data)[1:].ravel(),
                            data.cvel[1:].ravel(), data.qfrc_actuator[6:],
                            base.cfrc_ext(data)[1:].ravel()])

  def _reward_and_termination(self, data0, data, action, obs):
    xy_velocity = (self._mass_center(data) - self._mass_center(data0)) / self.dt
    min_z, max_z = self.healthy_z_range
    healthy = (min_z < data.qpos[2]) & (data.qpos[2] < max_z)
    forward = self.forward_reward_weight * xy_velocity[0]
    survive = self.healthy_reward * healthy
    ctrl = base.control_cost(self.ctrl_cost_weight, data.ctrl)
    contact = jnp.clip(self.contact_cost_weight * jnp.sum(jnp.square(base.cfrc_ext(data))),
                       *self.contact_cost_range)
    reward = forward + survive - ctrl - contact
    metrics = {'reward_survive': survive, 'reward_forward': forward, 'reward_ctrl': -ctrl,
               'reward_contact': -contact, 'x_velocity': xy_velocity[0],
               'y_velocity': xy_velocity[1]}
    return reward, ~healthy, metrics
