"""A jitted-friendly rollout of random actions shared by the benchmark scripts."""

import jax
import jax.numpy as jnp


def make_rollout(env, low: jax.Array, high: jax.Array, steps: int):
  """(state, key) -> (state, key) after ``steps`` steps with uniform random actions."""

  def rollout(state, key):
    first = state

    def body(carry, _):
      state, key = carry
      key, key_action = jax.random.split(key)
      action = jax.random.uniform(key_action, low.shape, minval=low, maxval=high)
      state = env.step(state, action)
      done = state.done > 0
      state = jax.tree.map(lambda a, b: jnp.where(done, a, b), first, state)
      return (state, key), None

    (state, key), _ = jax.lax.scan(body, (state, key), None, length=steps)
    return state, key

  return rollout
