"""Evaluation (spec §5): deterministic episodes of every member of every seed.

Every member runs ``eval_episodes`` episodes with the deterministic action tanh(mean)
on evaluation environments of its own, separate from the training environment, for at
most ``episode_length`` steps; an episode's return stops accumulating at termination.
All S·K·E episodes advance together in one jitted loop that ends as soon as every
episode has ended, so a task whose episodes end early is cheap to evaluate.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from piekd_mjx import sac as sac_lib
from piekd_mjx.envs.base import MjxTask
from piekd_mjx.envs.wrappers import TrainingWrapper


def make_evaluate(task: MjxTask, sac: sac_lib.Sac, episode_length: int,
                  num_episodes: int) -> Callable[[sac_lib.Params, jax.Array], jax.Array]:
  """Returns ``evaluate(actor_params [S, K, ...], key) -> returns [S, K, E]``."""
  scale_action = TrainingWrapper(task, episode_length).scale_action

  def act(actor_params, obs):
    """Deterministic actions [S, K, E, A] of each member for its episodes' obs."""
    per_member = jax.vmap(sac.act_deterministic, in_axes=(None, 0))  # over episodes
    return jax.vmap(jax.vmap(per_member))(actor_params, obs)

  def evaluate(actor_params: sac_lib.Params, key: jax.Array) -> jax.Array:
    num_seeds, num_members = jax.tree.leaves(actor_params)[0].shape[:2]
    shape = (num_seeds, num_members, num_episodes)
    # The task runs on one flat batch of S·K·E environments (one vmap of its physics
    # to trace, not three nested); only the actors see the [S, K, E] axes.
    keys = jax.random.split(key, num_seeds * num_members * num_episodes)
    states = jax.vmap(task.reset)(keys)

    def cond(carry):
      t, _, alive, _ = carry
      return (t < episode_length) & jnp.any(alive)

    def body(carry):
      t, states, alive, returns = carry
      actions = scale_action(act(actor_params, states.obs.reshape(shape + (-1,))))
      states = jax.vmap(task.step)(states, actions.reshape(-1, actions.shape[-1]))
      returns = returns + jnp.where(alive, states.reward.reshape(shape), 0.0)
      alive = alive & (states.done.reshape(shape) == 0)
      return t + 1, states, alive, returns

    init = (jnp.zeros((), jnp.int32), states, jnp.ones(shape, bool),
            jnp.zeros(shape, jnp.float32))
    _, _, _, returns = jax.lax.while_loop(cond, body, init)
    return returns

  return evaluate
