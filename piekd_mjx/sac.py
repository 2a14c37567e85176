"""Soft Actor-Critic for ONE ensemble member, as pure functions (docs/ALGORITHM.md §1).

Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications": the soft
Bellman residual of the twin critics with the clipped double-Q target (Eq. 5, with the
minimum of the two target critics as in §5 / Fujimoto et al. 2018), the policy loss
(Eq. 7 with the reparameterisation of Eq. 11-13), and the temperature loss (Eq. 18),
each minimised with Adam; the target critics follow by Polyak averaging after every
update.

The math is written for one member and one unbatched minibatch; the caller vmaps
``Sac.update`` over the ensemble axis [K] and the lane axis [L].

Order of one update (that of the reference implementation, ChainerRL's
``SoftActorCritic.update``: ``update_q_func`` then ``update_policy_and_temperature``):
  1. critics, towards y = r + gamma * (1 - termination) * (min_j Q'_j(s', a') -
     alpha * log pi(a'|s')), a' ~ pi(.|s'), under stop_gradient. Truncation (the time
     limit) does not stop bootstrapping; termination does.
  2. actor, on the critics just updated in step 1: alpha * log pi(a|s) - min_j Q_j(s, a).
  3. temperature, on the log-probabilities of the actor step's sample (the pre-update
     policy): -log_alpha * (log pi(a|s) + target_entropy). (The reference multiplies
     by alpha rather than log alpha; the gradient differs by the positive factor alpha,
     so the fixed point is the same.)
  4. target critics: optax.incremental_update(critics, target critics, tau).
All three losses use the temperature from before the update. Step 1 is
``update_critic`` and steps 2-3 are ``update_actor_and_alpha``; ``update`` chains them
and adds step 4 (the PIEKD *_extra variants run steps 2-3 alone).

The learning rates, discount, tau, initial temperature and target entropy are
``Scalars``: data that every function takes, not constants of a compiled program, so
runs that differ only in them train as lanes of one program. The functions are
top-level and take SAC's static pieces (``Nets``) first; ``make_sac`` binds them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from piekd_mjx import networks
from piekd_mjx.config import Config

Params = Any  # a flax variables pytree
Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class Scalars:
  """SAC's hyperparameters as data, float32 leaves [] (or [L], one per lane)."""

  actor_lr: jax.Array
  critic_lr: jax.Array
  alpha_lr: jax.Array
  discount: jax.Array
  tau: jax.Array
  init_alpha: jax.Array
  target_entropy: jax.Array  # -target_entropy_scale * dim(A)


def scalars(config: Config, action_size: int) -> Scalars:
  """The ``Scalars`` of ``config`` for actions [A], as float32 numpy scalars."""
  f32 = np.float32
  return Scalars(actor_lr=f32(config.actor_lr), critic_lr=f32(config.critic_lr),
                 alpha_lr=f32(config.alpha_lr), discount=f32(config.discount),
                 tau=f32(config.tau), init_alpha=f32(config.init_alpha),
                 target_entropy=f32(config.target_entropy(action_size)))


@flax.struct.dataclass
class Transition:
  """One environment step (leading batch axes allowed on every field)."""

  obs: jax.Array  # [..., O] float32
  action: jax.Array  # [..., A] float32, in [-1, 1] (the policy's space, before rescaling)
  reward: jax.Array  # [...] float32
  next_obs: jax.Array  # [..., O] float32
  termination: jax.Array  # [...] float32, 1 if the episode ended in a terminal state
  truncation: jax.Array  # [...] float32, 1 if the time limit cut the episode here


@flax.struct.dataclass
class MemberState:
  """Everything one member learns; the ensemble stacks it on a leading [K] axis."""

  actor_params: Params  # Actor variables (unbatched leaves, e.g. kernel [O, H])
  critic_params: Params  # TwinCritic variables, leaves with a leading head axis [2, ...]
  target_critic_params: Params  # same structure and shapes as critic_params
  log_alpha: jax.Array  # [] float32, log of the temperature alpha
  actor_opt_state: optax.OptState  # Adam state, shaped like actor_params
  critic_opt_state: optax.OptState  # Adam state, shaped like critic_params
  alpha_opt_state: optax.OptState  # Adam state, shaped like log_alpha []


@dataclasses.dataclass(frozen=True)
class Nets:
  """SAC's static pieces for observations [O] and actions [A]: the flax modules and
  the sizes, bound into every function below by ``make_sac``."""

  actor: networks.Actor
  critic: networks.TwinCritic
  obs_size: int
  action_size: int


class Sac(NamedTuple):
  """SAC's functions for one member with their ``Nets`` bound (``make_sac``).

  Every function that reads a hyperparameter takes the lane's ``Scalars``.

  Attributes:
    init: (key, scalars) -> MemberState, fresh networks, temperature and optimiser
      states.
    update: (state, batch [B], key, scalars, weight [B] | None) -> (state, metrics): one
      SAC update, steps 1-4. ``weight`` (optional, 0/1 per row) turns every mean over
      the batch into a masked mean; None is the plain mean.
    update_critic: (state, batch [B], key, scalars, weight) -> (state, metrics): step 1
      alone, ``key`` being the critic key (a' of the target).
    update_actor_and_alpha: (state, batch [B], key, scalars, weight) -> (state,
      metrics): steps 2-3 alone, against ``state.critic_params``, ``key`` being the
      actor key.
    td_target: (state, batch [B], key, scalars) -> y [B], the critics' regression
      target (under stop_gradient), drawing a' with ``key`` exactly as ``update`` does
      with its critic key.
    policy: (actor_params, obs [..., O]) -> (mean [..., A], log_std [..., A]).
    act: (actor_params, obs [..., O], key) -> action [..., A] in (-1, 1), stochastic.
    act_deterministic: (actor_params, obs [..., O]) -> tanh(mean) [..., A].
    q_values: (critic_params, obs [..., O], action [..., A]) -> Q [2, ...].
    nets: the static pieces.
    default_scalars: the config's ``Scalars``.
  """

  init: Callable[[jax.Array, Scalars], MemberState]
  update: Callable[..., tuple[MemberState, Metrics]]
  update_critic: Callable[..., tuple[MemberState, Metrics]]
  update_actor_and_alpha: Callable[..., tuple[MemberState, Metrics]]
  td_target: Callable[[MemberState, Transition, jax.Array, Scalars], jax.Array]
  policy: Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]
  act: Callable[[Params, jax.Array, jax.Array], jax.Array]
  act_deterministic: Callable[[Params, jax.Array], jax.Array]
  q_values: Callable[[Params, jax.Array, jax.Array], jax.Array]
  nets: Nets
  default_scalars: Scalars


# Adam's state does not depend on the learning rate: one init serves every lane.
adam = optax.adam
_init_optimizer = adam(1.0).init


def _check_batch(batch: Transition, obs_size: int, action_size: int) -> None:
  """Static rank and width checks of an unbatched-member minibatch [B, ...]."""
  expected = {
      'obs': (2, obs_size), 'action': (2, action_size), 'reward': (1, None),
      'next_obs': (2, obs_size), 'termination': (1, None), 'truncation': (1, None),
  }
  for name, (ndim, width) in expected.items():
    shape = getattr(batch, name).shape
    if len(shape) != ndim or (width is not None and shape[-1] != width):
      raise ValueError(f'Transition.{name} has shape {shape}; expected rank {ndim}'
                       + (f' with last axis {width}' if width is not None else ''))


def batch_mean(x: jax.Array, weight: jax.Array | None) -> jax.Array:
  """Mean over the last (batch) axis [..., B] -> [...]; masked by ``weight`` [B]."""
  if weight is None:
    return jnp.mean(x, axis=-1)
  return jnp.sum(x * weight, axis=-1) / jnp.maximum(jnp.sum(weight), 1.0)


def policy(nets: Nets, actor_params: Params, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The actor's mean and log-std [..., A] of ``obs`` [..., O]."""
  return nets.actor.apply(actor_params, obs)


def act(nets: Nets, actor_params: Params, obs: jax.Array, key: jax.Array) -> jax.Array:
  """A sampled action [..., A] in (-1, 1)."""
  mean, log_std = nets.actor.apply(actor_params, obs)
  return networks.sample_action(mean, log_std, key)[0]


def act_deterministic(nets: Nets, actor_params: Params, obs: jax.Array) -> jax.Array:
  """tanh(mean) [..., A], the action of evaluation."""
  mean, _ = nets.actor.apply(actor_params, obs)
  return networks.deterministic_action(mean)


def q_values(nets: Nets, critic_params: Params, obs: jax.Array,
             action: jax.Array) -> jax.Array:
  """The twin critics' Q [2, ...]."""
  return nets.critic.apply(critic_params, obs, action)


def init(nets: Nets, key: jax.Array, scalars_: Scalars) -> MemberState:
  """Fresh networks, the initial temperature and Adam states of one member."""
  key_actor, key_critic = jax.random.split(key)
  obs = jnp.zeros((nets.obs_size,), jnp.float32)
  action = jnp.zeros((nets.action_size,), jnp.float32)
  actor_params = nets.actor.init(key_actor, obs)
  critic_params = nets.critic.init(key_critic, obs, action)
  log_alpha = jnp.log(jnp.asarray(scalars_.init_alpha, jnp.float32))
  return MemberState(
      actor_params=actor_params,
      critic_params=critic_params,
      target_critic_params=jax.tree.map(jnp.copy, critic_params),
      log_alpha=log_alpha,
      actor_opt_state=_init_optimizer(actor_params),
      critic_opt_state=_init_optimizer(critic_params),
      alpha_opt_state=_init_optimizer(log_alpha),
  )


def td_target(nets: Nets, state: MemberState, batch: Transition, key: jax.Array,
              scalars_: Scalars) -> jax.Array:
  """y [B] = r + gamma (1 - termination) (min_j Q'_j(s', a') - alpha log pi(a'|s')),
  a' drawn with ``key``, under stop_gradient."""
  alpha = jnp.exp(state.log_alpha)
  mean, log_std = nets.actor.apply(state.actor_params, batch.next_obs)  # [B, A]
  next_action, next_log_prob = networks.sample_action(mean, log_std, key)  # [B, A], [B]
  next_q = nets.critic.apply(state.target_critic_params, batch.next_obs, next_action)
  next_v = jnp.min(next_q, axis=0) - alpha * next_log_prob  # [B]
  y = batch.reward + scalars_.discount * (1.0 - batch.termination) * next_v  # [B]
  return jax.lax.stop_gradient(y)


def update_critic(nets: Nets, state: MemberState, batch: Transition, key: jax.Array,
                  scalars_: Scalars, weight: jax.Array | None = None
                  ) -> tuple[MemberState, Metrics]:
  """Step 1: one Adam step of the twin critics towards the TD target.

  ``key`` draws a' for the target exactly as ``td_target`` does; only critic_params
  and critic_opt_state change.
  """
  _check_batch(batch, nets.obs_size, nets.action_size)
  y = td_target(nets, state, batch, key, scalars_)  # [B]

  def critic_loss_fn(critic_params):
    q = nets.critic.apply(critic_params, batch.obs, batch.action)  # [2, B]
    # Sum over the heads of 0.5 * MSE (ChainerRL: loss1 + loss2).
    loss = jnp.sum(0.5 * batch_mean(jnp.square(q - y), weight))
    return loss, q

  (critic_loss, q), critic_grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(
      state.critic_params)
  critic_updates, critic_opt_state = adam(scalars_.critic_lr).update(
      critic_grads, state.critic_opt_state, state.critic_params)
  critic_params = optax.apply_updates(state.critic_params, critic_updates)
  new_state = state.replace(critic_params=critic_params, critic_opt_state=critic_opt_state)
  q_mean = jnp.mean(q) if weight is None else batch_mean(jnp.mean(q, axis=0), weight)
  return new_state, {'sac/critic_loss': critic_loss, 'sac/q_mean': q_mean}


def update_actor_and_alpha(nets: Nets, state: MemberState, batch: Transition,
                           key: jax.Array, scalars_: Scalars,
                           weight: jax.Array | None = None) -> tuple[MemberState, Metrics]:
  """Steps 2-3: one Adam step of the actor against ``state.critic_params``, then one
  of the temperature on that step's (pre-update) log-probabilities.

  Both losses use the temperature of ``state``; only actor_params, log_alpha and
  their optimiser states change. Only ``batch.obs`` is read.
  """
  _check_batch(batch, nets.obs_size, nets.action_size)
  alpha = jnp.exp(state.log_alpha)  # [], the temperature before this step

  def actor_loss_fn(actor_params):
    mean, log_std = nets.actor.apply(actor_params, batch.obs)  # [B, A]
    action, log_prob = networks.sample_action(mean, log_std, key)  # [B, A], [B]
    min_q = jnp.min(nets.critic.apply(state.critic_params, batch.obs, action), axis=0)
    return batch_mean(alpha * log_prob - min_q, weight), log_prob

  (actor_loss, log_prob), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(
      state.actor_params)
  actor_updates, actor_opt_state = adam(scalars_.actor_lr).update(
      actor_grads, state.actor_opt_state, state.actor_params)
  actor_params = optax.apply_updates(state.actor_params, actor_updates)

  log_prob = jax.lax.stop_gradient(log_prob)  # [B]

  def alpha_loss_fn(log_alpha):
    return -batch_mean(log_alpha * (log_prob + scalars_.target_entropy), weight)

  alpha_loss, alpha_grad = jax.value_and_grad(alpha_loss_fn)(state.log_alpha)
  alpha_updates, alpha_opt_state = adam(scalars_.alpha_lr).update(
      alpha_grad, state.alpha_opt_state, state.log_alpha)
  log_alpha = optax.apply_updates(state.log_alpha, alpha_updates)

  new_state = state.replace(
      actor_params=actor_params,
      log_alpha=log_alpha,
      actor_opt_state=actor_opt_state,
      alpha_opt_state=alpha_opt_state,
  )
  metrics = {
      'sac/actor_loss': actor_loss,
      'sac/alpha_loss': alpha_loss,
      'sac/alpha': alpha,
      'sac/entropy': -batch_mean(log_prob, weight),
  }
  return new_state, metrics


def update(nets: Nets, state: MemberState, batch: Transition, key: jax.Array,
           scalars_: Scalars, weight: jax.Array | None = None
           ) -> tuple[MemberState, Metrics]:
  """One SAC update, steps 1-4 (the module's docstring)."""
  key_critic, key_actor = jax.random.split(key)
  # 1. Critics. 2-3. Actor against the critics just updated, then temperature; the
  # critic step leaves log_alpha alone, so all three use the temperature from before.
  state, critic_metrics = update_critic(nets, state, batch, key_critic, scalars_, weight)
  state, actor_metrics = update_actor_and_alpha(nets, state, batch, key_actor, scalars_,
                                                weight)
  # 4. Target critics.
  target_critic_params = optax.incremental_update(
      state.critic_params, state.target_critic_params, scalars_.tau)
  return (state.replace(target_critic_params=target_critic_params),
          {**critic_metrics, **actor_metrics})


def make_sac(config: Config, obs_size: int, action_size: int) -> Sac:
  """SAC's functions for observations [O] and actions [A], with ``config``'s networks
  (hidden_sizes, log_std bounds, initialiser and output scale) bound; the config's
  other hyperparameters are its ``default_scalars``."""
  nets = Nets(
      actor=networks.Actor(
          action_size=action_size, hidden_sizes=tuple(config.hidden_sizes),
          log_std_min=config.log_std_min, log_std_max=config.log_std_max,
          initializer=config.network_init, output_scale=config.policy_output_scale),
      critic=networks.TwinCritic(hidden_sizes=tuple(config.hidden_sizes),
                                 initializer=config.network_init),
      obs_size=obs_size, action_size=action_size)
  bind = lambda fn: functools.partial(fn, nets)
  return Sac(init=bind(init), update=bind(update), update_critic=bind(update_critic),
             update_actor_and_alpha=bind(update_actor_and_alpha),
             td_target=bind(td_target), policy=bind(policy), act=bind(act),
             act_deterministic=bind(act_deterministic), q_values=bind(q_values),
             nets=nets, default_scalars=scalars(config, action_size))
