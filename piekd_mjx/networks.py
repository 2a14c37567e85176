"""The SAC networks of one member (docs/ALGORITHM.md §1; Haarnoja et al. 2018, "Soft Actor-Critic
Algorithms and Applications", §4 and Appendix C).

* Every layer's weights are drawn by ``kernel_init`` (Glorot uniform by default, as the
  reference's ``make_mlp``, ``make_q_func_with_optimizer`` and ``make_pi_with_optimizer``
  in pfnet-research/piekd's ``train_ensemble_sac.py`` do with Chainer's
  ``GlorotUniform()``, and as softlearning does with Keras' ``glorot_uniform``); biases
  start at zero (Chainer's ``L.Linear`` default). The actor's output layer takes
  ``GlorotUniform(policy_output_scale)``: Chainer's scale multiplies the uniform bound.
* ``Actor``: MLP (ReLU) -> mean and log-std per action dim, log-std clipped to
  [log_std_min, log_std_max]; the action is tanh of a Gaussian sample.
* ``TwinCritic``: the two Q networks on concat(obs, action) as ONE module vmapped over
  a leading head axis (as sbx's VectorCritic), returning Q values [2, ...].
* ``sample_action``: reparameterised tanh-Gaussian sample and its log-density with the
  change-of-variables correction of SAC's Eq. 26, log(1 - tanh(u)^2) written in the
  numerically stable form 2 * (log 2 - u - softplus(-2u)).
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from piekd_mjx.config import NETWORK_INIT_CHOICES

_LOG_2 = 0.6931471805599453


def kernel_init(name: str, scale: float = 1.0) -> nn.initializers.Initializer:
  """The weight initialiser ``name`` with its spread multiplied by ``scale``.

  glorot_uniform: U(-b, b), b = scale * sqrt(6 / (fan_in + fan_out)), Chainer's
  ``GlorotUniform(scale)``. lecun_normal: a normal truncated at two standard deviations
  and rescaled to the standard deviation scale * sqrt(1 / fan_in), flax's ``nn.Dense``
  default (scale 1 draws exactly what ``nn.Dense`` draws).
  """
  if name == 'glorot_uniform':
    return nn.initializers.variance_scaling(scale**2, 'fan_avg', 'uniform')
  if name == 'lecun_normal':
    return nn.initializers.variance_scaling(scale**2, 'fan_in', 'truncated_normal')
  raise ValueError(f'unknown initialiser {name!r}; expected one of {NETWORK_INIT_CHOICES}')


class MLP(nn.Module):
  """Dense layers with an activation between them (and after the last if asked).

  Weights by ``kernel_init(initializer)``, the last layer's by
  ``kernel_init(initializer, output_scale)``; biases zero.
  """

  layer_sizes: Sequence[int]
  activation: Callable[[jax.Array], jax.Array] = nn.relu
  activate_final: bool = False
  initializer: str = 'glorot_uniform'
  output_scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    last = len(self.layer_sizes) - 1
    for i, size in enumerate(self.layer_sizes):
      scale = self.output_scale if i == last else 1.0
      x = nn.Dense(size, kernel_init=kernel_init(self.initializer, scale),
                   bias_init=nn.initializers.zeros, name=f'dense_{i}')(x)
      if i + 1 < len(self.layer_sizes) or self.activate_final:
        x = self.activation(x)
    return x


class Actor(nn.Module):
  """Gaussian policy head before the tanh squashing: obs [..., O] -> mean, log_std."""

  action_size: int
  hidden_sizes: Sequence[int] = (256, 256)
  log_std_min: float = -20.0
  log_std_max: float = 2.0
  initializer: str = 'glorot_uniform'
  output_scale: float = 1.0  # the reference's --policy-output-scale

  @nn.compact
  def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = MLP(tuple(self.hidden_sizes) + (2 * self.action_size,), initializer=self.initializer,
            output_scale=self.output_scale)(obs)  # [..., 2A]
    mean, log_std = jnp.split(x, 2, axis=-1)  # [..., A] each
    log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
    return mean, log_std


class _QHead(nn.Module):
  """One Q network: concat(obs, action) [..., O + A] -> Q [...]."""

  hidden_sizes: Sequence[int]
  initializer: str = 'glorot_uniform'

  @nn.compact
  def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
    x = jnp.concatenate([obs, action], axis=-1)  # [..., O + A]
    return MLP(tuple(self.hidden_sizes) + (1,), initializer=self.initializer)(x)[..., 0]  # [...]


class TwinCritic(nn.Module):
  """``num_heads`` independently initialised Q networks as one vmapped module.

  Parameters carry a leading head axis [2, ...]; the output is Q values [2, ...].
  """

  hidden_sizes: Sequence[int] = (256, 256)
  num_heads: int = 2
  initializer: str = 'glorot_uniform'

  @nn.compact
  def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
    heads = nn.vmap(
        _QHead,
        variable_axes={'params': 0},
        split_rngs={'params': True},
        in_axes=None,
        out_axes=0,
        axis_size=self.num_heads,
    )
    return heads(hidden_sizes=tuple(self.hidden_sizes), initializer=self.initializer,
                 name='heads')(obs, action)


def tanh_log_det_jacobian(u: jax.Array) -> jax.Array:
  """log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)), elementwise, stable."""
  return 2.0 * (_LOG_2 - u - jax.nn.softplus(-2.0 * u))


def sample_action(mean: jax.Array, log_std: jax.Array,
                  key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Samples a = tanh(u), u ~ N(mean, exp(log_std)^2), with its log-density.

  Args:
    mean: [..., A] pre-tanh mean.
    log_std: [..., A] pre-tanh log standard deviation.
    key: PRNG key.

  Returns:
    action [..., A] in (-1, 1) (reparameterised: differentiable in mean and log_std)
    and log_prob [...], log pi(a) = sum_i [log N(u_i) - log(1 - tanh(u_i)^2)].
  """
  noise = jax.random.normal(key, mean.shape, mean.dtype)  # [..., A]
  u = mean + jnp.exp(log_std) * noise  # [..., A]
  log_normal = -0.5 * jnp.square(noise) - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
  log_prob = jnp.sum(log_normal - tanh_log_det_jacobian(u), axis=-1)  # [...]
  return jnp.tanh(u), log_prob


def deterministic_action(mean: jax.Array) -> jax.Array:
  """The evaluation action tanh(mean), [..., A]."""
  return jnp.tanh(mean)
