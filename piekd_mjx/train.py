"""The training program: every lane (one seed of one run) and member in one jitted loop.

One environment step of one lane (paper Algorithm 1, lines 9-13): the acting member
(uniform random actions during warm-up) acts, the task steps and resets itself at the
end of an episode, the transition goes into the lane's replay buffer, the episode
statistics are updated, and every member does its SAC update on its own minibatch.
The step is written for ONE lane as top-level pure functions (``lane_act``,
``lane_update``, ...); ``lanes.over_lanes`` adds the [L] axis (the members' updates are
vmapped over [K] inside a lane), and ``lanes.in_batches`` runs batches of lanes one after
another (on a CPU one lane per batch; elsewhere all in one). The replay buffers [L, C, W]
are the one exception: a batch's inserts and samples index them in place by lane
(``Replay.add_at``, ``Replay.sample_at``), so they are never sliced or copied.

A chunk of steps is one ``lax.fori_loop`` and the host touches the state only between
chunks. Its control flow comes in two forms (``Config.control_flow``), whose records
agree to float32 rounding. Dynamic (a CPU's): the chunk's length and whether it learns are traced
arguments, so one compiled program serves every chunk, and conditionals skip work (the
updates while warming up, the restarts on steps where no episode ended). Static (an
accelerator's, which waits on the host at every data-dependent loop predicate and
conditional): the length and ``learn`` are compile-time constants, one program per pair,
so the chunk's loops have static trip counts, and the restarts are selects.

Runs that share a ``program_key`` (task, K, network and batch sizes, replay capacity,
episode length, warm-up, ...; ``keys.py``) train as lanes of one program
(``programs.make_group_trainer`` compiles it); their SAC scalars and phase data are
per-lane ``lanes.Settings``. Periodic work (phases, evaluation) happens between chunks
and never as a masked select inside the per-step computation (docs/ALGORITHM.md §7): a
phase runs on just the lanes that have one at that step (``lanes.at_lanes``), with one
program per phase kind; ``schedule.py`` decides when.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from piekd_mjx import distill
from piekd_mjx import ensemble as ensemble_lib
from piekd_mjx import envs
from piekd_mjx import lanes as lanes_lib
from piekd_mjx import replay as replay_lib
from piekd_mjx import sac as sac_lib
from piekd_mjx.config import Config
from piekd_mjx.envs.wrappers import TrainingWrapper

Metrics = dict[str, jax.Array]

# The SAC metrics averaged over a chunk, per lane and member.
SAC_METRICS = ('sac/critic_loss', 'sac/actor_loss', 'sac/alpha_loss', 'sac/alpha',
               'sac/entropy', 'sac/q_mean')
# The numerical health of a chunk, per lane and member: the first step whose SAC
# metrics were not all finite (-1 if none), and whether the member state is finite at
# the chunk's end.
HEALTH_METRICS = ('health/nonfinite_loss_step', 'health/finite_params')


@flax.struct.dataclass
class TrainState:
  """Everything a group of runs carries; every per-lane leaf leads with [L]."""

  members: sac_lib.MemberState  # leaves [L, K, ...]
  replay: replay_lib.ReplayState  # data [L, C, W], position [L], size [L]
  env_state: envs.State  # the training environments, leaves [L, ...]
  ensemble: ensemble_lib.EnsembleState  # member selection and R_k, leaves [L, ...]
  key: jax.Array  # [L, 2] uint32, each lane's PRNG key
  step: jax.Array  # [] int32, environment steps taken by every lane
  num_phases: jax.Array  # [L] int32, phases each lane has run
  # The SAC_METRICS summed step by step since the host last reset them (``reset_sums``),
  # each [L, K]: carried across chunks, so that a sum does not depend on where a group's
  # events split the steps into chunks.
  sums: dict[str, jax.Array]


def members_finite(members: sac_lib.MemberState) -> jax.Array:
  """[L, K] bool: every floating-point leaf of each member (leaves [L, K, ...]) is
  finite; reduces over every axis but the first two."""
  flags = [jnp.isfinite(x).reshape(x.shape[:2] + (-1,)).all(-1)
           for x in jax.tree.leaves(members) if jnp.issubdtype(x.dtype, jnp.floating)]
  return jnp.stack(flags).all(0)


def select_lanes(state: TrainState, lanes: slice) -> TrainState:
  """The lanes ``lanes`` of ``state`` as a state of their own (new arrays, so that
  donating ``state`` leaves it intact)."""
  take = lambda x: jnp.copy(x[lanes])
  return state.replace(**{name: jax.tree.map(take, getattr(state, name))
                          for name in BATCH_FIELDS + ('replay', 'num_phases')},
                       step=jnp.copy(state.step))


def reset_sums(state: TrainState) -> TrainState:
  """``state`` with its SAC metric sums at zero."""
  return state.replace(sums={k: jnp.zeros_like(v) for k, v in state.sums.items()})


def evaluation_inputs(state: TrainState) -> tuple[sac_lib.Params, jax.Array]:
  """What an evaluation of ``state`` reads: the actors [L, K, ...] and the step, as
  arrays of their own, so that the chunk that donates ``state`` may run while they are
  evaluated."""
  return jax.tree.map(jnp.copy, (state.members.actor_params, state.step))


def make_replay(task: envs.MjxTask, capacity: int) -> replay_lib.Replay:
  """The replay buffer of ``task``'s transitions, ``capacity`` rows per lane."""
  obs_size, action_size = task.observation_size, task.action_size
  example = sac_lib.Transition(
      obs=jnp.zeros((obs_size,), jnp.float32), action=jnp.zeros((action_size,), jnp.float32),
      reward=jnp.zeros((), jnp.float32), next_obs=jnp.zeros((obs_size,), jnp.float32),
      termination=jnp.zeros((), jnp.float32), truncation=jnp.zeros((), jnp.float32))
  return replay_lib.make_replay(capacity, example)


# -- one lane -------------------------------------------------------------------------


class Parts(NamedTuple):
  """The static pieces of a lane program."""

  env: TrainingWrapper
  sac: sac_lib.Sac
  replay: replay_lib.Replay
  num_members: int
  updates_per_step: int
  batch_size: int
  recent_episodes: int
  static: bool = False  # static control flow (``control_flow``)


def static_control(config: Config) -> bool:
  """Whether ``config``'s chunks compile with static control flow (``control_flow``;
  'auto': everywhere but on a CPU)."""
  if config.control_flow == 'auto':
    return jax.default_backend() != 'cpu'
  return config.control_flow == 'static'


def make_parts(config: Config, task: envs.MjxTask) -> Parts:
  """The ``Parts`` of ``config``'s ``program_key`` on ``task``."""
  return Parts(env=TrainingWrapper(task, config.episode_length),
               sac=sac_lib.make_sac(config, task.observation_size, task.action_size),
               replay=make_replay(task, config.replay_capacity),
               num_members=config.ensemble_size, updates_per_step=config.updates_per_step,
               batch_size=config.batch_size, recent_episodes=config.recent_episodes,
               static=static_control(config))


def lane_init(parts: Parts, key: jax.Array, settings: lanes_lib.Settings):
  """A fresh lane: (members [K], replay, environment, ensemble state, next key)."""
  key_members, key_env, key_ensemble, key_next = jax.random.split(key, 4)
  init = lambda k: parts.sac.init(k, settings.sac)
  members = jax.vmap(init)(jax.random.split(key_members, parts.num_members))
  return (members, parts.replay.init(), parts.env.reset(key_env),
          ensemble_lib.init(key_ensemble, parts.num_members, parts.recent_episodes),
          key_next)


def lane_act(parts: Parts, members: sac_lib.MemberState, env_state: envs.State,
             ensemble_state: ensemble_lib.EnsembleState, key: jax.Array, learn: jax.Array):
  """One environment step of one lane: the acting member (or, warming up, uniform
  noise) acts, the task steps, the episode statistics follow. Returns the next
  environment state, the transition, the ensemble state, the key of this step's
  updates and the lane's next key."""
  key_act, key_select, key_update, key_next = jax.random.split(key, 4)
  action_size = parts.env.action_size
  # Both actions are computed (the actor's is one small forward pass) and ``learn``
  # picks one: a select of two [A] vectors, where a cond would pass the members'
  # parameters through a branch.
  actor_params = jax.tree.map(lambda x: x[ensemble_state.acting], members.actor_params)
  action = jnp.where(learn, parts.sac.act(actor_params, env_state.obs, key_act),  # [A]
                     jax.random.uniform(key_act, (action_size,), minval=-1.0, maxval=1.0))
  next_state = parts.env.step_without_restart(env_state, action)
  transition = sac_lib.Transition(
      obs=env_state.obs, action=action, reward=next_state.reward,
      next_obs=next_state.info['next_obs'], termination=next_state.done,
      truncation=next_state.info['truncation'])
  ensemble_state = ensemble_lib.record_step(
      ensemble_state, parts.env.ended(next_state), next_state.info['completed_return'],
      key_select)
  return next_state, transition, ensemble_state, key_update, key_next


def lane_update_keys(parts: Parts, key_update: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per update of one lane's step: the K members' sampling and SGD keys [U, K, 2]."""
  sample_keys, sgd_keys = [], []
  for _ in range(parts.updates_per_step):
    key_update, key_sample, key_sgd = jax.random.split(key_update, 3)
    sample_keys.append(jax.random.split(key_sample, parts.num_members))
    sgd_keys.append(jax.random.split(key_sgd, parts.num_members))
  return jnp.stack(sample_keys), jnp.stack(sgd_keys)


def lane_update(parts: Parts, members: sac_lib.MemberState, batches: sac_lib.Transition,
                keys: jax.Array, settings: lanes_lib.Settings
                ) -> tuple[sac_lib.MemberState, Metrics]:
  """One SAC update of every member of one lane, on its own minibatch [K, B] with its
  key [K]; metrics [K]."""
  update = lambda m, b, k: parts.sac.update(m, b, k, settings.sac)
  return lanes_lib.over_lanes(update, parts.num_members)(members, batches, keys)


# -- lanes ----------------------------------------------------------------------------


def step(parts: Parts, state: TrainState, settings: lanes_lib.Settings, lanes: jax.Array,
         learn: jax.Array | bool) -> tuple[TrainState, Metrics]:
  """One environment step of the batch of lanes ``lanes`` [b], and (if ``learn``) the
  members' updates.

  ``state``'s per-lane leaves (and ``settings``') lead with [b], except the replay
  buffers: all L of them, which the batch's insert and samples index in place (a
  scatter and a gather into data [L, C, W]). Dynamic control flow (``learn`` traced):
  warm-up and learning steps are one program, the updates a loop of
  ``updates_per_step`` trips when learning and none when warming up, so the members'
  state stays in place (where a ``lax.cond`` returning it unchanged from one branch
  makes XLA copy it every step); the minibatches are drawn either way, before that loop.
  Static (``learn`` a Python bool): a warm-up step has no updates at all.
  """
  over = functools.partial(lanes_lib.over_lanes, size=lanes.shape[0])
  env_state, transition, ensemble_state, key_update, keys = over(
      functools.partial(lane_act, parts, learn=learn))(
          state.members, state.env_state, state.ensemble, state.key)
  replay_state = parts.replay.add_at(state.replay, lanes, transition)
  zeros = {name: jnp.zeros((lanes.shape[0], parts.num_members), jnp.float32)
           for name in SAC_METRICS}
  if parts.static and not learn:
    members, sums = state.members, zeros
  else:
    members, sums = updates(parts, state.members, replay_state, settings, lanes, key_update,
                            learn, zeros)
  metrics = {name: sums[name] / parts.updates_per_step for name in SAC_METRICS}
  if parts.static:
    env_state = over(parts.env.restart_where)(env_state)
  else:
    # Episodes end rarely: restart the ended ones only on steps where one did (a
    # vmapped lax.cond would be a select of both branches).
    env_state = parts.env.restart_ended(env_state, over=over)
  state = state.replace(members=members, replay=replay_state, env_state=env_state,
                        ensemble=ensemble_state, key=keys, step=state.step + 1)
  return state, metrics


def updates(parts: Parts, members: sac_lib.MemberState, replay_state: replay_lib.ReplayState,
            settings: lanes_lib.Settings, lanes: jax.Array, key_update: jax.Array,
            learn: jax.Array | bool, zeros: Metrics) -> tuple[sac_lib.MemberState, Metrics]:
  """The ``updates_per_step`` updates of every member of the batch of lanes ``lanes``
  [b] (none when a traced ``learn`` is false), each on its own minibatch; the sums of
  their SAC metrics [b, K]."""
  over = functools.partial(lanes_lib.over_lanes, size=lanes.shape[0])
  sample_keys, sgd_keys = over(functools.partial(lane_update_keys, parts))(key_update)
  batches = [parts.replay.sample_at(replay_state, lanes, sample_keys[:, u], parts.batch_size)
             for u in range(parts.updates_per_step)]  # leaves [b, K, B, ...] each
  batches = jax.tree.map(lambda *x: jnp.stack(x), *batches)  # leaves [U, b, K, B, ...]
  update = over(functools.partial(lane_update, parts))

  def one_update(u, carry):
    members, sums = carry
    members, metrics = update(members, jax.tree.map(lambda x: x[u], batches),
                              sgd_keys[:, u], settings)
    return members, {name: sums[name] + metrics[name] for name in SAC_METRICS}

  num_updates = parts.updates_per_step if parts.static else jnp.where(
      learn, parts.updates_per_step, 0)
  return jax.lax.fori_loop(0, num_updates, one_update, (members, zeros))


def steps(parts: Parts, state: TrainState, settings: lanes_lib.Settings, lanes: jax.Array,
          num_steps: jax.Array | int, learn: jax.Array | bool
          ) -> tuple[TrainState, Metrics]:
  """``num_steps`` steps of the batch of lanes ``lanes`` (see ``step``), their SAC
  metrics added to ``state.sums``; the first step with a non-finite one (-1 if none),
  [b, K]. A Python int ``num_steps`` (static control flow) makes a loop of static trip
  count."""
  shape = (lanes.shape[0], parts.num_members)

  def body(_, carry):
    state, nonfinite_step = carry
    state, metrics = step(parts, state, settings, lanes, learn)
    finite = jnp.stack([jnp.isfinite(metrics[k]) for k in SAC_METRICS]).all(0)  # [b, K]
    nonfinite_step = jnp.where((nonfinite_step < 0) & ~finite, state.step, nonfinite_step)
    state = state.replace(sums={k: state.sums[k] + metrics[k] for k in SAC_METRICS})
    return state, nonfinite_step

  none = jnp.full(shape, -1, jnp.int32)
  state, nonfinite_step = jax.lax.fori_loop(0, num_steps, body, (state, none))
  return state, {'health/nonfinite_loss_step': nonfinite_step}


# The fields of a TrainState that a batch of lanes takes its slice of (leaves [L, ...]);
# the replay buffers, by far the largest, are indexed in place instead.
BATCH_FIELDS = ('members', 'env_state', 'ensemble', 'key', 'sums')


def chunk(parts: Parts, batch: int, state: TrainState, num_steps, learn,
          settings: lanes_lib.Settings) -> tuple[TrainState, Metrics]:
  """``num_steps`` steps of every lane, in batches of ``batch`` lanes one after another
  (``lanes.in_batches``); metrics are the chunk means of ``SAC_METRICS`` (from the
  change of ``state.sums``) and the ``HEALTH_METRICS``, [L, K]. With static control flow
  ``num_steps`` and ``learn`` are Python constants."""
  if not parts.static:
    num_steps, learn = jnp.asarray(num_steps, jnp.int32), jnp.asarray(learn, jnp.bool_)
  per_lane = ({name: getattr(state, name) for name in BATCH_FIELDS}, settings)

  def batch_steps(per_lane, replay_state, lanes):
    fields, part_settings = per_lane
    part = state.replace(replay=replay_state, **fields)
    part, metrics = steps(parts, part, part_settings, lanes, num_steps, learn)
    return ({name: getattr(part, name) for name in BATCH_FIELDS}, part_settings), \
        part.replay, metrics

  num_lanes = state.key.shape[0]
  (fields, _), replay_state, metrics = lanes_lib.in_batches(
      batch_steps, per_lane, state.replay, num_lanes, batch)
  count = jnp.maximum(jnp.asarray(num_steps, jnp.int32), 1).astype(jnp.float32)
  metrics.update({k: (fields['sums'][k] - state.sums[k]) / count for k in SAC_METRICS})
  state = state.replace(replay=replay_state, step=state.step + num_steps, **fields)
  metrics['health/finite_params'] = members_finite(state.members)
  return state, metrics


def init(parts: Parts, keys: jax.Array, settings: lanes_lib.Settings) -> TrainState:
  """The fresh state of every lane, from its key [L, 2] and settings [L]."""
  members, replay_state, env_state, ensemble_state, keys = jax.vmap(
      functools.partial(lane_init, parts))(keys, settings)
  num_lanes = keys.shape[0]
  return TrainState(members=members, replay=replay_state, env_state=env_state,
                    ensemble=ensemble_state, key=keys, step=jnp.zeros((), jnp.int32),
                    num_phases=jnp.zeros((num_lanes,), jnp.int32),
                    sums={k: jnp.zeros((num_lanes, parts.num_members), jnp.float32)
                          for k in SAC_METRICS})


def phases(phase: distill.Phase, batch: int, state: TrainState,
           settings: lanes_lib.Settings, lanes: jax.Array) -> tuple[TrainState, Metrics]:
  """One phase of each lane of ``lanes`` [n] (``phase`` being the one-seed phase of
  their kind), reading their replay buffers in place; the other lanes are untouched."""

  def lane_phase(written, read, replay_state, lane):
    members, key = written
    ensemble_state, lane_settings = read
    key_phase, key_next = jax.random.split(key)
    members, metrics = phase(members, replay_state, ensemble_state, key_phase,
                             lane_settings.phase, lane_settings.sac, lane)
    return (members, key_next), metrics

  (members, keys), metrics = lanes_lib.at_lanes(
      lane_phase, (state.members, state.key), (state.ensemble, settings), state.replay,
      lanes, batch)
  at = lanes_lib.write_index(lanes, state.num_phases.shape[0])
  return state.replace(members=members, key=keys,
                       num_phases=state.num_phases.at[at].add(1, mode='drop')), metrics


