"""Evaluation (docs/ALGORITHM.md §5): deterministic episodes of every member of every seed.

Every member runs ``eval_episodes`` episodes with the deterministic action tanh(mean)
on evaluation environments of its own, separate from the training environment, for at
most ``episode_length`` steps; an episode's return stops accumulating at termination.
The episodes run in batches of ``batch_size`` (``Config.eval_batch``): each batch
advances together in one loop that ends as soon as every episode of it has ended, the
batches one after another. One batch of all S·K·E episodes is the default and was the
fastest measured, on this project's CPU too (docs/BENCHMARKS.md); smaller groups need
less memory. The episodes, their reset keys and their actions are the same either way
(returns agree to float32 rounding).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp

from piekd_mjx import sac as sac_lib
from piekd_mjx.envs.base import MjxTask
from piekd_mjx.envs.wrappers import TrainingWrapper


def make_evaluate(task: MjxTask, sac: sac_lib.Sac, episode_length: int, num_episodes: int,
                  batch_size: int | None = None
                  ) -> Callable[[sac_lib.Params, jax.Array], jax.Array]:
  """Returns ``evaluate(actor_params [S, K, ...], key) -> returns [S, K, E]``.

  ``batch_size``: the episodes stepped as one batch; None (all S·K·E of them) or a
  divisor of ``num_episodes`` (each member's episodes in groups of that size, the groups
  and members one after another).
  """
  if batch_size is not None and (batch_size < 1 or num_episodes % batch_size):
    raise ValueError(f'--eval_batch={batch_size} is invalid: must divide --eval_episodes '
                     f'({num_episodes})')
  scale_action = TrainingWrapper(task, episode_length).scale_action

  def run(act, states, alive):
    """Steps ``states`` (leaves [...] of any batch shape ``alive.shape``) with ``act``
    until every episode has ended or the time limit; returns their returns."""

    def cond(carry):
      t, _, alive, _ = carry
      return (t < episode_length) & jnp.any(alive)

    def body(carry):
      t, states, alive, returns = carry
      states = step(states, scale_action(act(states.obs)))
      returns = returns + jnp.where(alive, states.reward, 0.0)
      return t + 1, states, alive & (states.done == 0), returns

    step = task.step
    for _ in range(alive.ndim):
      step = jax.vmap(step)
    init = (jnp.zeros((), jnp.int32), states, alive, jnp.zeros(alive.shape, jnp.float32))
    return jax.lax.while_loop(cond, body, init)[3]

  def all_at_once(actor_params, keys):
    """Every episode in one batch: the task on one flat batch of S·K·E environments (one
    vmap of its physics to trace); only the actors see the [S, K, E] axes."""
    shape = keys.shape[:3]
    per_member = jax.vmap(sac.act_deterministic, in_axes=(None, 0))  # over episodes
    act_all = jax.vmap(jax.vmap(per_member))
    act = lambda obs: act_all(actor_params, obs.reshape(shape + (-1,))).reshape(
        (-1, task.action_size))
    states = jax.vmap(task.reset)(keys.reshape((-1,) + keys.shape[3:]))
    return run(act, states, jnp.ones((math.prod(shape),), bool)).reshape(shape)

  def in_groups(actor_params, keys):
    """Each member's episodes in groups of ``batch_size``, one group after another."""
    shape = keys.shape[:3]
    members = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), actor_params)
    groups = keys.reshape((shape[0] * shape[1], num_episodes // batch_size, batch_size)
                          + keys.shape[3:])

    def member(args):
      params, member_groups = args

      def group(group_keys):
        if batch_size == 1:  # unbatched: a vmap over one element is not free on a CPU
          state = task.reset(group_keys[0])
          act = functools.partial(sac.act_deterministic, params)
          return run(act, state, jnp.ones((), bool))[None]
        act = jax.vmap(functools.partial(sac.act_deterministic, params))
        return run(act, jax.vmap(task.reset)(group_keys), jnp.ones((batch_size,), bool))

      return jax.lax.map(group, member_groups)

    return jax.lax.map(member, (members, groups)).reshape(shape)

  def evaluate(actor_params: sac_lib.Params, key: jax.Array) -> jax.Array:
    num_seeds, num_members = jax.tree.leaves(actor_params)[0].shape[:2]
    keys = jax.random.split(key, num_seeds * num_members * num_episodes)
    keys = keys.reshape((num_seeds, num_members, num_episodes) + keys.shape[1:])
    if batch_size is None:
      return all_at_once(actor_params, keys)
    return in_groups(actor_params, keys)

  return evaluate
