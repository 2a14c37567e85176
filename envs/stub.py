"""A task without physics, for tests of the trainer and for timing it without physics.

``stub`` has InvertedPendulum's shapes and episodes (observation 4: cart position, pole
angle, cart velocity, pole angular velocity; action 1, a force in [-3, 3]; reward 1
while the pole stands, 0 on the step it falls; termination when |angle| > 0.2; reset
noise U(-0.01, 0.01)), but its dynamics is a cart-pole linearised about the upright
pose and stepped by explicit Euler (dt 0.04 s): a few multiply-adds, which compile in
a fraction of the time MJX's step takes. It is not a MuJoCo task: it has no model to
play on MuJoCo C, no parity with Gymnasium, no published score to normalise by, and
``envs.names()`` leaves it out.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.envs import base as brax_base

from piekd_mjx.envs.base import SOLVER_NAMES
from piekd_mjx.envs.base import SOLVERS
from piekd_mjx.envs.base import SolverOptions
from piekd_mjx.envs.base import State

_DT = 0.04
_GRAVITY_OVER_LENGTH = 9.81 / 0.6  # the pole's fall rate, 1/s^2
# The pole's angular acceleration per unit of force (the cart's is 1 per unit), chosen
# so that uniform random actions end an episode about as soon as InvertedPendulum-v5's
# do on MuJoCo C (docs/TASKS.md).
_POLE_REACTION = 20.0


# The solvers of a physics: the stub has none.
_NOT_OFFERED = ('capped', 'warp', 'mujoco_c')


class Stub(brax_base.Env):
  """The physics-free task ``stub`` (module docstring)."""

  metric_names = ('reward_survive',)
  capped_solver = None
  offers_warp = False
  offers_mujoco_c = False

  def __init__(self, solver: str | SolverOptions = 'faithful'):
    self.solver = self.solver_options(solver) if isinstance(solver, str) else solver
    self.action_low = jnp.full((1,), -3.0, jnp.float32)
    self.action_high = jnp.full((1,), 3.0, jnp.float32)

  @classmethod
  def solver_options(cls, name: str) -> SolverOptions:
    """Any solver but capped, warp and mujoco_c is accepted and means nothing here."""
    if name not in SOLVERS or name in _NOT_OFFERED:
      raise ValueError(f'--solver={name!r} is invalid for the stub task: must be one of '
                       + ', '.join(n for n in SOLVER_NAMES if n not in _NOT_OFFERED))
    return SOLVERS[name]

  @property
  def dt(self) -> float:
    return _DT

  @property
  def observation_size(self) -> int:
    return 4

  @property
  def action_size(self) -> int:
    return 1

  @property
  def backend(self) -> str:
    return 'stub'

  def reset(self, rng: jax.Array) -> State:
    x = jax.random.uniform(rng, (4,), minval=-0.01, maxval=0.01)
    zero = jnp.zeros((), jnp.float32)
    return State(pipeline_state={'x': x}, obs=x, reward=zero, done=zero,
                 metrics={'reward_survive': zero}, info={})

  def step(self, state: State, action: jax.Array) -> State:
    x = state.pipeline_state['x']
    force = jnp.asarray(action, jnp.float32)[0]
    acceleration = jnp.stack([force, _GRAVITY_OVER_LENGTH * x[1] - _POLE_REACTION * force])
    x = x + _DT * jnp.concatenate([x[2:], acceleration])
    terminated = ~jnp.isfinite(x).all() | (jnp.abs(x[1]) > 0.2)
    reward = 1.0 - terminated.astype(jnp.float32)
    return state.replace(pipeline_state={'x': x}, obs=x, reward=reward,
                         done=terminated.astype(jnp.float32),
                         metrics={**state.metrics, 'reward_survive': reward})
