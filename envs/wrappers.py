"""Episodes for training: time limit, automatic reset, bootstrap observation.

``TrainingWrapper`` turns a task into the stream of transitions the trainer stores:

* actions come in the policy's space [-1, 1] and are rescaled to the task's control
  range (Gymnasium's action space);
* the time limit (1000 steps by default) ends an episode by *truncation*
  (``info['truncation']``), kept apart from termination (``State.done``);
* an episode that ended starts again from a *fresh* random initial state drawn with the
  state's own key (never a cached first state, a known brax/Playground trap);
* ``info['next_obs']`` keeps the true last observation of the step for bootstrapping,
  since ``State.obs`` is already the first observation of the next episode.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from brax.envs import base as brax_base

from piekd_mjx.envs.base import MjxTask
from piekd_mjx.envs.base import State


class TrainingWrapper(brax_base.Wrapper):
  """Time limit, automatic reset and action rescaling around an ``MjxTask``.

  ``info`` holds, per environment: ``rng`` (key for the next reset), ``steps`` (int32,
  steps taken in the current episode), ``truncation`` (f32, 1 where the step hit the time
  limit without terminating), ``next_obs`` (the step's true next observation),
  ``episode_return`` (f32, return of the current episode so far) and
  ``completed_return`` (f32, the return of the episode that ended at this step; valid
  where ``done`` or ``truncation``).
  """

  def __init__(self, env: MjxTask, episode_length: int = 1000):
    super().__init__(env)
    self.episode_length = int(episode_length)

  def scale_action(self, action: jax.Array) -> jax.Array:
    """Maps [-1, 1] to the task's control range."""
    low, high = self.env.action_low, self.env.action_high
    return low + (jnp.asarray(action, jnp.float32) + 1.0) * 0.5 * (high - low)

  def reset(self, rng: jax.Array) -> State:
    key_next, key_reset = jax.random.split(rng)
    state = self.env.reset(key_reset)
    zero = jnp.zeros((), jnp.float32)
    info = {'rng': key_next, 'steps': jnp.zeros((), jnp.int32), 'truncation': zero,
            'next_obs': state.obs, 'episode_return': zero, 'completed_return': zero}
    return state.replace(info=info)

  def step(self, state: State, action: jax.Array) -> State:
    """One step; an episode that ends restarts at once (under ``lax.cond``)."""
    state = self.step_without_restart(state, action)
    return jax.lax.cond(self.ended(state), self.restart, lambda s: s, state)

  def step_without_restart(self, state: State, action: jax.Array) -> State:
    """One step with its bookkeeping, leaving a finished episode's final state in place.

    Batched callers (the trainer vmaps over seeds, where a ``lax.cond`` would become a
    select that pays for a reset on every step) follow it with ``restart_ended``.
    """
    inner = self.env.step(state.replace(info={}), self.scale_action(action))
    steps = state.info['steps'] + 1
    terminated = inner.done > 0
    truncated = (steps >= self.episode_length) & ~terminated
    ended = terminated | truncated
    episode_return = state.info['episode_return'] + inner.reward
    info = {'rng': state.info['rng'],
            'steps': jnp.where(ended, 0, steps).astype(jnp.int32),
            'truncation': truncated.astype(jnp.float32),
            'next_obs': inner.obs,
            'episode_return': jnp.where(ended, 0.0, episode_return),
            'completed_return': episode_return}
    return inner.replace(info=info)

  @staticmethod
  def ended(state: State) -> jax.Array:
    """Whether the step that produced ``state`` ended its episode."""
    return (state.done > 0) | (state.info['truncation'] > 0)

  def restart(self, state: State) -> State:
    """A fresh random initial state, keeping the step's reward, done and info."""
    key_next, key_reset = jax.random.split(state.info['rng'])
    fresh = self.env.reset(key_reset)
    return state.replace(pipeline_state=fresh.pipeline_state, obs=fresh.obs,
                         info={**state.info, 'rng': key_next})

  def restart_ended(self, states: State, over: Callable = jax.vmap) -> State:
    """``restart_where`` of a batch of states [N, ...] under one ``lax.cond`` on
    whether any episode ended, so a reset's physics is paid only on the steps where
    one did. ``over`` maps a one-state function over the batch axis (``jax.vmap`` or
    the trainer's squeezing / seed-by-seed mappers)."""
    return jax.lax.cond(jnp.any(jax.vmap(self.ended)(states)), over(self.restart_where),
                        lambda s: s, states)

  def restart_where(self, state: State) -> State:
    """``restart`` of the states whose episode ended (selected, for batched states)."""
    restarted = self.restart(state)
    ended = self.ended(state)
    return jax.tree.map(lambda a, b: jnp.where(ended, a, b), restarted, state)
