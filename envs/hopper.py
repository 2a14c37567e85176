"""Hopper: Gymnasium ``Hopper-v5`` on MJX.

Observation (11): ========================================================
| index | content                                                          |
|-------|------------------------------------------------------------------|
| 0-4   | qpos[1:]: torso z, torso angle, thigh, leg, foot angles          |
| 5-10  | qvel clipped to [-10, 10]: root x, z, angle, 3 joint velocities  |

Action (3): thigh, leg and foot torques in [-1, 1].

Reward and reset: see ``planar_walker``. Terminates (unhealthy) unless every entry of
state_vector()[2:] lies in (-100, 100), torso z > 0.7 and torso angle in (-0.2, 0.2).
"""

import jax.numpy as jnp

from piekd_mjx.envs import base
from piekd_mjx.envs import planar_walker


class Hopper(planar_walker.PlanarWalker):
  xml_file = 'hopper.xml'
  healthy_state_range = (-100.0, 100.0)
  healthy_z_range = (0.7, float('inf'))
  healthy_angle_range = (-0.2, 0.2)
  # --solver=capped: the smallest caps measured to keep parity (docs/TASKS.md).
  capped_solver = base.SolverOptions(iterations=4, ls_iterations=8, capped=True)

  def _is_healthy(self, data):
    z, angle = data.qpos[1], data.qpos[2]
    state = base.state_vector(data)[2:]
    lo, hi = self.healthy_state_range
    healthy_state = jnp.all((lo < state) & (state < hi))
    healthy_z = (self.healthy_z_range[0] < z) & (z < self.healthy_z_range[1])
    healthy_angle = (self.healthy_angle_range[0] < angle) & (angle < self.healthy_angle_range[1])
    return healthy_state & healthy_z & healthy_angle
