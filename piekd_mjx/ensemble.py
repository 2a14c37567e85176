"""Joint training of the ensemble: member selection and recent returns (paper §4.3).

At the start of every episode one member, drawn uniformly at random, is chosen to act
for the whole episode (Algorithm 1, line 9). When the episode ends, its undiscounted
return is recorded for that member; R_k, the member's recent performance statistic,
is the mean of its last M recorded returns (M = ``Config.recent_episodes``). A member
that has not finished an episode has no R_k.

The functions are written for one lane; the trainer vmaps them over lanes [L].
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class EnsembleState:
  """Member selection and episode statistics of one seed."""

  acting: jax.Array  # [] int32, the member acting in the current episode
  returns: jax.Array  # [K, M] float32, ring of each member's last M episode returns
  num_episodes: jax.Array  # [K] int32, training episodes each member has finished
  num_selected: jax.Array  # [K] int32, episodes each member was drawn to act in


def init(key: jax.Array, num_members: int, recent_episodes: int) -> EnsembleState:
  """No episode finished yet; the first acting member drawn uniformly."""
  acting = jax.random.randint(key, (), 0, num_members, dtype=jnp.int32)
  return EnsembleState(
      acting=acting,
      returns=jnp.zeros((num_members, recent_episodes), jnp.float32),
      num_episodes=jnp.zeros((num_members,), jnp.int32),
      num_selected=jax.nn.one_hot(acting, num_members, dtype=jnp.int32))


def record_step(state: EnsembleState, episode_ended: jax.Array, episode_return: jax.Array,
                key: jax.Array) -> EnsembleState:
  """After an environment step: where the episode ended, records its return for the
  acting member and draws the member for the next episode."""
  num_members, recent = state.returns.shape
  k = state.acting
  slot = state.num_episodes[k] % recent
  returns = state.returns.at[k, slot].set(
      jnp.where(episode_ended, episode_return, state.returns[k, slot]))
  num_episodes = state.num_episodes.at[k].add(episode_ended.astype(jnp.int32))
  drawn = jax.random.randint(key, (), 0, num_members, dtype=jnp.int32)
  acting = jnp.where(episode_ended, drawn, k)
  num_selected = state.num_selected + episode_ended * jax.nn.one_hot(
      acting, num_members, dtype=jnp.int32)
  return EnsembleState(acting=acting, returns=returns, num_episodes=num_episodes,
                       num_selected=num_selected)


def recent_returns(state: EnsembleState) -> tuple[jax.Array, jax.Array]:
  """R_k of every member [K] and whether it exists [K] bool (a finished episode)."""
  recent = state.returns.shape[1]
  count = jnp.minimum(state.num_episodes, recent)  # [K]
  mask = jnp.arange(recent)[None, :] < count[:, None]  # [K, M]
  total = jnp.sum(jnp.where(mask, state.returns, 0.0), axis=1)  # [K]
  has_return = count > 0
  mean = jnp.where(has_return, total / jnp.maximum(count, 1), jnp.nan)
  return mean, has_return
