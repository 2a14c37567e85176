"""Who teaches and what a student learns: the teacher's election and the distillation
losses of one student (paper §4.4, Eq. 1-2; docs/ALGORITHM.md §3).

The teacher is the member with the best recent return R_k among those with a finished
episode ('best'), or one drawn uniformly ('random'). A student minimises the KL of the
teacher's policy from its own (Eq. 1, in closed form on the pre-tanh diagonal
Gaussians) and the squared error of each critic head against the teacher's same head on
the stored actions (Eq. 2); the teacher's outputs are under stop_gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from piekd_mjx import ensemble
from piekd_mjx.config import TEACHER_CHOICES
from piekd_mjx.sac import Params, Sac, Transition, batch_mean


def gaussian_kl(mean_p: jax.Array, log_std_p: jax.Array, mean_q: jax.Array,
                log_std_q: jax.Array) -> jax.Array:
  """KL(p || q) of diagonal Gaussians, summed over the last axis: [..., A] -> [...].

  Per dimension, log(s_q / s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2, written as
  0.5 * (expm1(d) - d + ((m_p - m_q) / s_q)^2) with d = 2 (log s_p - log s_q): each term
  is >= 0 in floating point and exactly 0 when p == q.
  """
  d = 2.0 * (log_std_p - log_std_q)  # [..., A]
  z = (mean_p - mean_q) * jnp.exp(-log_std_q)  # [..., A]
  return 0.5 * jnp.sum(jnp.expm1(d) - d + jnp.square(z), axis=-1)


def distillation_losses(sac: Sac, actor_params: Params, critic_params: Params,
                        teacher_actor_params: Params, teacher_critic_params: Params,
                        batch: Transition, weight: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Eq. 1 and Eq. 2 of ONE student against the teacher on a minibatch [B].

  Args:
    sac: the member's networks.
    actor_params, critic_params: the student's (unbatched) parameters.
    teacher_actor_params, teacher_critic_params: the teacher's; its outputs are taken
      under stop_gradient, so no gradient reaches them.
    batch: transitions [B]; obs and the stored actions are read.
    weight: [B] float, 1 for the rows that count, 0 for padding.

  Returns:
    policy_kl [], masked mean over the batch of KL(pi_teacher || pi_student) summed over
    action dims; critic_mse [], the sum over the 2 heads of each head's masked-mean
    squared error against the same head of the teacher.
  """
  mean_t, log_std_t = jax.lax.stop_gradient(
      sac.policy(teacher_actor_params, batch.obs))  # [B, A] each
  q_t = jax.lax.stop_gradient(
      sac.q_values(teacher_critic_params, batch.obs, batch.action))  # [2, B]
  mean_s, log_std_s = sac.policy(actor_params, batch.obs)  # [B, A] each
  q_s = sac.q_values(critic_params, batch.obs, batch.action)  # [2, B]
  policy_kl = batch_mean(gaussian_kl(mean_t, log_std_t, mean_s, log_std_s), weight)
  critic_mse = jnp.sum(batch_mean(jnp.square(q_t - q_s), weight))
  return policy_kl, critic_mse


def elect_teacher(teacher: str | jax.Array, ensemble_state: ensemble.EnsembleState,
                  key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The teacher k_t [] int32 and whether the phase is skipped [] bool.

  ``teacher`` is 'best' or 'random', or its index in TEACHER_CHOICES as data. 'best':
  argmax_k R_k over the members with a finished episode (the others cannot be
  elected); skipped when no member has one (k_t is then -1). 'random': uniform over
  all K members with ``key``; never skipped.
  """
  if isinstance(teacher, str):
    if teacher not in TEACHER_CHOICES:
      raise ValueError(f"--teacher={teacher!r} is invalid: must be one of 'best', 'random'")
    teacher = TEACHER_CHOICES.index(teacher)
  recent, has_return = ensemble.recent_returns(ensemble_state)  # [K], [K]
  num_members = recent.shape[0]
  is_random = jnp.asarray(teacher) == TEACHER_CHOICES.index('random')
  no_return = ~jnp.any(has_return)
  best = jnp.argmax(jnp.where(has_return, recent, -jnp.inf)).astype(jnp.int32)
  best = jnp.where(no_return, -1, best)
  drawn = jax.random.randint(key, (), 0, num_members, dtype=jnp.int32)
  return (jnp.where(is_random, drawn, best).astype(jnp.int32),
          ~is_random & no_return)
