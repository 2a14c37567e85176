"""The periodic knowledge-sharing phase of one lane: teacher election and intra-ensemble
knowledge distillation (paper §4.4, Eq. 1-2; docs/ALGORITHM.md §3-4).

A phase takes the stacked member state (leaves [K, ...]) of ONE seed, the shared replay
buffer and the ensemble statistics; the trainer vmaps it over lanes [L] and calls it
only at phase boundaries, outside the per-step loop (docs/ALGORITHM.md §7). What it does is
``Config.share``:

* ``'distill'`` (piekd, piekd_random_teacher): elect a teacher k_t (``teaching.py``:
  'best' = argmax_k R_k among the members with a finished episode, the phase being
  skipped when none has one; 'random' = uniform over the K members). Every other member
  is a student and minimises Eq. 1 + Eq. 2 (``teaching.distillation_losses``) with a
  fresh Adam (``Config.distill_lr``) per phase. The teacher's parameters come out of the
  phase bit-identical; alpha is not distilled. Afterwards each student's target critics
  take ONE Polyak step (tau) towards its distilled critics.
* ``'hardcopy'`` (piekd_hardcopy): the same election; the teacher's actor and critic
  parameters and their SAC optimiser states are copied into every student (not the
  target critics, not log_alpha nor its optimiser state).
* ``'extra'`` (*_sac_extra): no teacher; every member does extra SAC updates with its
  own optimisers on the same data schedule as a phase: actor and temperature only
  (``Config.extra_updates='policy_alpha'``, the reference) or the full ``Sac.update``
  with its target step (``'all'``).

Data schedule (``Config.distill_data``), the same minibatches for every member:
* ``'full'`` (reference default): ``distill_epochs`` epochs over the whole buffer
  (rows [0, size), ``size`` dynamic) in contiguous slices of B = ``distill_batch_size``
  rows starting at multiples of B, visited in a fresh random order each epoch; rows past
  ``size`` in the last, partial slice are masked out of every loss (masked mean). The
  trip count, distill_epochs * ceil(size / B), is dynamic: a ``fori_loop`` over it
  lowers to a while loop.
* ``'sample'``: distill_epochs * distill_sample_batches minibatches drawn uniformly with
  replacement (``Replay.sample``).

The K members are one vmapped computation over the [K] axis; the teacher goes through
it like a student and is restored afterwards with a where on the is-teacher mask.

What a phase program is compiled for, its kind (``phase_kind``), is the share mode, the
extra updates, the data mode and the epochs and minibatch size; the teacher election,
the learning rate, the sampled minibatches per epoch and SAC's ``Scalars`` are data
(``PhaseScalars``), so one program serves lanes that differ in them. A phase reads its
buffer in place from a stack of buffers when given its lane.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from piekd_mjx import ensemble
from piekd_mjx.config import (Config, DISTILL_DATA_CHOICES, EXTRA_UPDATES_CHOICES,
                              TEACHER_CHOICES)
from piekd_mjx.replay import Replay, ReplayState
from piekd_mjx.sac import MemberState, Params, Sac, Transition
from piekd_mjx.teaching import distillation_losses, elect_teacher

Metrics = dict[str, jax.Array]
Phase = Callable[..., tuple[MemberState, Metrics]]


@flax.struct.dataclass
class PhaseScalars:
  """A phase's settings that are data, leaves [] (or [L], one per lane)."""

  teacher: jax.Array  # int32, the index of Config.teacher in TEACHER_CHOICES
  lr: jax.Array  # float32, Config.distill_lr
  sample_batches: jax.Array  # int32, Config.distill_sample_batches


def phase_scalars(config: Config) -> PhaseScalars:
  """The ``PhaseScalars`` of ``config`` as numpy scalars."""
  return PhaseScalars(teacher=np.int32(TEACHER_CHOICES.index(config.teacher)),
                      lr=np.float32(config.distill_lr),
                      sample_batches=np.int32(config.distill_sample_batches))


# The fields a phase program is compiled for; the others of a phase are PhaseScalars.
KIND_FIELDS = ('share', 'extra_updates', 'distill_data', 'distill_epochs',
               'distill_batch_size')


def phase_kind(config: Config) -> tuple:
  """What distinguishes ``config``'s phase program from another's of the same task and
  shapes (the values of ``KIND_FIELDS``)."""
  return tuple(getattr(config, name) for name in KIND_FIELDS)


@flax.struct.dataclass
class StudentState:
  """What a distillation phase trains, stacked over members [K]."""

  actor_params: Params  # leaves [K, ...]
  critic_params: Params  # leaves [K, 2, ...]
  actor_opt_state: optax.OptState  # the phase's fresh Adam state, shaped like actor_params
  critic_opt_state: optax.OptState  # the phase's fresh Adam state, shaped like critic_params


def _num_slices(size: jax.Array, batch_size: int) -> jax.Array:
  """ceil(size / B): the slices of B rows that hold the ``size`` stored rows."""
  return (size + batch_size - 1) // batch_size


def gradient_steps(config: Config, size, sample_batches=None):
  """A phase's gradient steps per member on a buffer of ``size`` rows (an int or a
  traced [] int32): epochs x ceil(size / B) in 'full' mode, epochs x the sampled
  minibatches (``sample_batches``, by default the config's) in 'sample' mode.
  ``config`` may be a ``Kind`` given ``sample_batches``."""
  if config.distill_data == 'full':
    return config.distill_epochs * _num_slices(size, config.distill_batch_size)
  if sample_batches is None:
    sample_batches = config.distill_sample_batches
  return config.distill_epochs * sample_batches


def slice_order(key: jax.Array, size: jax.Array, capacity: int, batch_size: int,
                epochs: int) -> jax.Array:
  """The 'full' schedule: slice indices [epochs, ceil(C / B)] int32.

  Slice j holds rows [j * B, (j + 1) * B). In every epoch the ceil(size / B) slices
  that hold data come first, in a fresh uniformly random order, followed by the empty
  ones (which the phase never visits).
  """
  max_slices = -(-capacity // batch_size)
  num_slices = _num_slices(size, batch_size)  # [] int32
  scores = jax.random.uniform(key, (epochs, max_slices))  # [E, N] in [0, 1)
  scores = jnp.where(jnp.arange(max_slices) < num_slices, scores, 2.0)  # [E, N]
  return jnp.argsort(scores, axis=-1).astype(jnp.int32)


def _where_members(mask: jax.Array, new: Any, old: Any) -> Any:
  """Per member: ``new`` where mask [K] else ``old``, leaf by leaf (leaves [K, ...])."""
  return jax.tree.map(
      lambda n, o: jnp.where(mask.reshape(mask.shape + (1,) * (n.ndim - 1)), n, o),
      new, old)


def _take(tree: Any, k: jax.Array) -> Any:
  """Member k of a stacked tree (leaves [K, ...] -> [...])."""
  return jax.tree.map(lambda x: x[k], tree)


@dataclasses.dataclass(frozen=True)
class Kind:
  """What a phase program is compiled for (``KIND_FIELDS``, named as in ``Config`` so
  that ``gradient_steps`` reads either)."""

  share: str
  extra_updates: str
  distill_data: str
  distill_epochs: int
  distill_batch_size: int


def kind_of(config: Config) -> Kind:
  """``config``'s ``Kind``; ValueError where its share has no phase or a choice is
  unknown."""
  if config.share not in ('distill', 'hardcopy', 'extra'):
    raise ValueError(f'--share={config.share!r} has no phase: make_phase needs one of '
                     "'distill', 'hardcopy', 'extra'")
  for name, valid in (('distill_data', DISTILL_DATA_CHOICES), ('teacher', TEACHER_CHOICES),
                      ('extra_updates', EXTRA_UPDATES_CHOICES)):
    if getattr(config, name) not in valid:
      raise ValueError(f'--{name}={getattr(config, name)!r} is invalid: must be one of '
                       + ', '.join(valid))
  return Kind(*phase_kind(config))


BatchAt = Callable[[jax.Array], tuple[Transition, jax.Array]]


def make_batches(kind: Kind, replay: Replay, size: jax.Array,
                 read: Callable[[jax.Array], Transition], key: jax.Array,
                 sample_batches: jax.Array) -> tuple[jax.Array, BatchAt]:
  """The phase's gradient steps per member [] int32 (dynamic in 'full' mode) and step
  i -> (minibatch [B], weight [B]) of the data schedule, on a buffer of ``size`` rows
  read by ``read`` (rows -> transitions)."""
  batch_size = kind.distill_batch_size
  num_steps = jnp.asarray(gradient_steps(kind, size, sample_batches), jnp.int32)
  if kind.distill_data == 'full':
    order = slice_order(key, size, replay.capacity, batch_size, kind.distill_epochs)
    num_slices = jnp.maximum(_num_slices(size, batch_size), 1)

    def batch_at(i):
      start = order[i // num_slices, i % num_slices] * batch_size
      rows = start + jnp.arange(batch_size, dtype=jnp.int32)  # [B]
      weight = (rows < size).astype(jnp.float32)  # [B]
      return read(rows), weight
  else:
    def batch_at(i):
      rows = replay.sample_indices(jax.random.fold_in(key, i), size, batch_size)
      return read(rows), jnp.ones((batch_size,), jnp.float32)
  return num_steps, batch_at


def student_losses(sac: Sac, members: MemberState, teacher: jax.Array, batch: Transition,
                   weight: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Eq. 1-2 of every member against member ``teacher``: ([K], [K])."""
  losses = functools.partial(distillation_losses, sac)
  return jax.vmap(losses, in_axes=(0, 0, None, None, None, None))(
      members.actor_params, members.critic_params,
      _take(members.actor_params, teacher), _take(members.critic_params, teacher),
      batch, weight)


def distill_members(sac: Sac, members: MemberState, teacher: jax.Array,
                    trip_count: jax.Array, batch_at: BatchAt, lr: jax.Array,
                    tau: jax.Array) -> MemberState:
  """``trip_count`` Adam steps of Eq. 1-2 for every member (the teacher's own come out
  unchanged only after ``_where_members``), then one target step of tau."""
  optimizer = optax.adam(lr)
  teacher_actor_params = _take(members.actor_params, teacher)
  teacher_critic_params = _take(members.critic_params, teacher)

  def loss_fn(actor_params, critic_params, batch, weight):
    policy_kl, critic_mse = distillation_losses(
        sac, actor_params, critic_params, teacher_actor_params, teacher_critic_params,
        batch, weight)
    return policy_kl + critic_mse

  # The actor and the critics share no parameter: one gradient of the sum gives each
  # network the gradient of its own loss.
  grad_fn = jax.vmap(jax.grad(loss_fn, argnums=(0, 1)), in_axes=(0, 0, None, None))
  init_opt = jax.vmap(optimizer.init)
  update_opt = jax.vmap(optimizer.update)

  def step(i, students: StudentState) -> StudentState:
    batch, weight = batch_at(i)  # [B], [B]
    actor_grads, critic_grads = grad_fn(
        students.actor_params, students.critic_params, batch, weight)
    actor_updates, actor_opt_state = update_opt(
        actor_grads, students.actor_opt_state, students.actor_params)
    critic_updates, critic_opt_state = update_opt(
        critic_grads, students.critic_opt_state, students.critic_params)
    return StudentState(
        actor_params=optax.apply_updates(students.actor_params, actor_updates),
        critic_params=optax.apply_updates(students.critic_params, critic_updates),
        actor_opt_state=actor_opt_state,
        critic_opt_state=critic_opt_state)

  students = StudentState(
      actor_params=members.actor_params,
      critic_params=members.critic_params,
      actor_opt_state=init_opt(members.actor_params),  # fresh per phase
      critic_opt_state=init_opt(members.critic_params))
  students = jax.lax.fori_loop(0, trip_count, step, students)
  return members.replace(
      actor_params=students.actor_params,
      critic_params=students.critic_params,
      target_critic_params=optax.incremental_update(
          students.critic_params, members.target_critic_params, tau))


def hardcopy(members: MemberState, teacher: jax.Array) -> MemberState:
  """Every member gets the teacher's actor, critics and their SAC optimiser states."""

  def broadcast(tree):  # the teacher's leaves [...] repeated to [K, ...]
    return jax.tree.map(lambda x: jnp.broadcast_to(x[teacher], x.shape), tree)

  return members.replace(
      actor_params=broadcast(members.actor_params),
      critic_params=broadcast(members.critic_params),
      actor_opt_state=broadcast(members.actor_opt_state),
      critic_opt_state=broadcast(members.critic_opt_state))


def extra_updates(kind: Kind, sac: Sac, members: MemberState, trip_count: jax.Array,
                  batch_at: BatchAt, key: jax.Array, sac_scalars: Any) -> MemberState:
  """``trip_count`` extra SAC steps of every member on the phase's minibatches: actor
  and temperature ('policy_alpha') or the whole update ('all')."""
  num_members = members.log_alpha.shape[0]
  sac_step = (sac.update_actor_and_alpha if kind.extra_updates == 'policy_alpha'
              else sac.update)
  member_step = jax.vmap(lambda m, b, k, w: sac_step(m, b, k, sac_scalars, w),
                         in_axes=(0, None, 0, None))

  def step(i, members: MemberState) -> MemberState:
    batch, weight = batch_at(i)  # [B], [B]
    keys = jax.random.split(jax.random.fold_in(key, i), num_members)  # [K]
    return member_step(members, batch, keys, weight)[0]

  return jax.lax.fori_loop(0, trip_count, step, members)


def _no_teacher_metrics(recent: jax.Array, num_steps: jax.Array) -> Metrics:
  nan = jnp.full((), jnp.nan, jnp.float32)
  return {
      'distill/teacher': jnp.full((), -1, jnp.int32),
      'distill/skipped': jnp.zeros((), jnp.int32),
      'distill/recent_returns': recent,
      'distill/policy_kl_before': nan,
      'distill/policy_kl_after': nan,
      'distill/critic_mse_before': nan,
      'distill/critic_mse_after': nan,
      'distill/num_updates': num_steps,
  }


def teacher_phase(kind: Kind, sac: Sac, replay: Replay, members: MemberState,
                  ensemble_state: ensemble.EnsembleState, size: jax.Array,
                  read: Callable[[jax.Array], Transition], num_steps: jax.Array,
                  batch_at: BatchAt, keys: tuple[jax.Array, jax.Array],
                  scalars: PhaseScalars, tau: jax.Array) -> tuple[MemberState, Metrics]:
  """A 'distill' or 'hardcopy' phase: elect the teacher, move the students, and measure
  Eq. 1-2 before and after on one probe minibatch."""
  key_teacher, key_probe = keys
  num_members = ensemble_state.returns.shape[0]
  recent, _ = ensemble.recent_returns(ensemble_state)  # [K]
  teacher, skipped = elect_teacher(scalars.teacher, ensemble_state, key_teacher)
  safe_teacher = jnp.maximum(teacher, 0)  # any valid index when skipped
  is_student = jnp.arange(num_members) != teacher  # [K]
  if kind.share == 'distill':
    trip_count = jnp.where(skipped, 0, num_steps).astype(jnp.int32)
    new_members = distill_members(sac, members, safe_teacher, trip_count, batch_at,
                                  scalars.lr, tau)
  else:
    trip_count = jnp.zeros((), jnp.int32)
    new_members = hardcopy(members, safe_teacher)
  # The teacher (and everyone, when skipped) comes out bit-identical.
  new_members = _where_members(is_student & ~skipped, new_members, members)

  batch_size = kind.distill_batch_size
  probe = read(replay.sample_indices(key_probe, size, batch_size))  # [B]
  probe_weight = jnp.ones((batch_size,), jnp.float32)
  num_students = jnp.maximum(jnp.sum(is_student), 1)

  def student_mean(x):  # [K] -> [], NaN when skipped
    mean = jnp.sum(jnp.where(is_student, x, 0.0)) / num_students
    return jnp.where(skipped, jnp.nan, mean)

  kl_before, mse_before = student_losses(sac, members, safe_teacher, probe, probe_weight)
  kl_after, mse_after = student_losses(sac, new_members, safe_teacher, probe, probe_weight)
  return new_members, {
      'distill/teacher': teacher,
      'distill/skipped': skipped.astype(jnp.int32),
      'distill/recent_returns': recent,
      'distill/policy_kl_before': student_mean(kl_before),
      'distill/policy_kl_after': student_mean(kl_after),
      'distill/critic_mse_before': student_mean(mse_before),
      'distill/critic_mse_after': student_mean(mse_after),
      'distill/num_updates': trip_count,
  }


def phase(kind: Kind, sac: Sac, replay: Replay, members: MemberState,
          replay_state: ReplayState, ensemble_state: ensemble.EnsembleState,
          key: jax.Array, scalars: PhaseScalars, sac_scalars: Any,
          lane: jax.Array | None = None) -> tuple[MemberState, Metrics]:
  """One phase of one lane (``make_phase`` describes it and binds the static pieces)."""
  num_members = ensemble_state.returns.shape[0]
  if members.log_alpha.shape != (num_members,):
    raise ValueError(f'members.log_alpha has shape {members.log_alpha.shape}; expected '
                     f'({num_members},), one per member of the ensemble state')
  if lane is None:
    size, read = replay_state.size, functools.partial(replay.get, replay_state)
  else:  # buffer ``lane`` of the stack, read in place
    size = replay_state.size[lane]
    read = functools.partial(replay.get_at, replay_state, lane)
  key_teacher, key_probe, key_data, key_updates = jax.random.split(key, 4)
  num_steps, batch_at = make_batches(kind, replay, size, read, key_data,
                                     scalars.sample_batches)
  if kind.share == 'extra':
    recent, _ = ensemble.recent_returns(ensemble_state)  # [K]
    new_members = extra_updates(kind, sac, members, num_steps, batch_at, key_updates,
                                sac_scalars)
    return new_members, _no_teacher_metrics(recent, num_steps)
  return teacher_phase(kind, sac, replay, members, ensemble_state, size, read, num_steps,
                       batch_at, (key_teacher, key_probe), scalars, sac_scalars.tau)


def make_phase(config: Config, sac: Sac, replay: Replay) -> Phase:
  """The knowledge-sharing phase of one lane for ``config.share``, its static pieces
  bound.

  Args:
    config: reads its ``phase_kind`` (share, extra_updates, distill_data,
      distill_epochs, distill_batch_size); its teacher, distill_lr and
      distill_sample_batches are the lanes' ``PhaseScalars`` (``phase_scalars``).
    sac: the members' SAC functions.
    replay: the shared buffer's functions.

  Returns:
    ``phase(members, replay_state, ensemble_state, key, scalars, sac_scalars,
    lane=None) -> (members, metrics)`` with members' leaves [K, ...], ``scalars`` the
    lane's ``PhaseScalars`` and ``sac_scalars`` its ``sac.Scalars`` (tau of the target
    step, and the updates of 'extra'). With ``lane`` (a [] int32), ``replay_state`` is
    a stack of buffers [L] and the phase reads buffer ``lane`` in place. The metrics, a
    flat dict:
      'distill/teacher' [] int32: k_t, -1 if skipped or share='extra';
      'distill/skipped' [] int32: 1 if no teacher could be elected (nothing changed);
      'distill/recent_returns' [K]: R_k, NaN where none;
      'distill/{policy_kl,critic_mse}_{before,after}' []: the means over the students
        of ``distillation_losses`` on one random minibatch of distill_batch_size
        transitions drawn at the start of the phase; NaN if skipped or share='extra'
        (there is no teacher);
      'distill/num_updates' [] int32: gradient steps done per student (per member for
        'extra'); 0 for 'hardcopy' and when skipped.

  Raises:
    ValueError: share='none' (no phase) or an unknown share, teacher, distill_data or
      extra_updates.
  """
  return functools.partial(phase, kind_of(config), sac, replay)
