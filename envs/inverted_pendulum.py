"""InvertedPendulum: Gymnasium ``InvertedPendulum-v5`` on MJX, the small task for
fast tests.

Observation (4): cart position, pole angle, cart velocity, pole angular velocity.
Action (1): force on the cart in [-3, 3].
Reward: 1 while the pole stands, 0 on the step that ends the episode. Terminates when
the observation is non-finite or |pole angle| > 0.2.
Reset: qpos and qvel += U(-0.01, 0.01). Frame skip 2 (dt 0.04 s).
"""

import jax.numpy as jnp

from piekd_mjx.envs import base


class InvertedPendulum(base.MjxTask):
  xml_file = 'inverted_pendulum.xml'
  frame_skip = 2
  reset_noise_scale = 0.01
  qvel_noise = 'uniform'
  metric_names = ('reward_survive',)
  # --solver=capped: the smallest caps measured to keep parity (docs/TASKS.md).
  capped_solver = base.SolverOptions(iterations=1, ls_iterations=4, capped=True)
  offers_warp = True  # no contact: its parity holds on MuJoCo Warp (docs/TASKS.md)
  offers_mujoco_c = True  # reads qpos and qvel alone

  def _observation(self, data):
    return jnp.concatenate([data.qpos, data.qvel])

  def _reward_and_termination(self, data0, data, action, obs):
    terminated = ~jnp.isfinite(obs).all() | (jnp.abs(obs[1]) > 0.2)
    reward = 1.0 - terminated.astype(jnp.float32)
    return reward, terminated, {'reward_survive': reward}
