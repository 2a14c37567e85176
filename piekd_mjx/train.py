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
episode length, warm-up, ...) train as lanes of one program (``make_group_trainer``);
their SAC scalars and phase data are per-lane ``lanes.Settings``. Periodic work
(phases, evaluation) happens between chunks and never as a masked select inside the
per-step computation (docs/ALGORITHM.md §7): a phase runs on just the lanes that have one at that
step (``lanes.at_lanes``), with one program per phase kind; ``schedule.py`` decides
when.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from typing import Callable, NamedTuple, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from piekd_mjx import distill
from piekd_mjx import ensemble as ensemble_lib
from piekd_mjx import envs
from piekd_mjx import evaluate as evaluate_lib
from piekd_mjx import lanes as lanes_lib
from piekd_mjx import processes
from piekd_mjx import replay as replay_lib
from piekd_mjx import sac as sac_lib
from piekd_mjx import sharding as sharding_lib
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


class Trainer(NamedTuple):
  """The jitted programs of a group of runs (one run: the group of its S seeds).

  Attributes:
    init: () -> TrainState of every lane.
    chunk: (state, num_steps, learn) -> (state, metrics): the one jitted program
      behind ``collect`` (learn=False) and ``train`` (learn=True); ``learn`` is traced.
    collect: (state, num_steps) -> (state, metrics): warm-up steps, uniform random
      actions, no update. ``state`` is donated.
    train: (state, num_steps) -> (state, metrics): steps with the acting member's
      actions and SAC updates of every member; metrics are the chunk means of
      ``SAC_METRICS`` and the ``HEALTH_METRICS``, each [L, K]. ``state`` is donated.
    phase: (state, lanes=None) -> (state, metrics): one knowledge-sharing phase of the
      lanes ``lanes`` (host ints; None: every lane whose run has phases), each run by
      the program of its phase kind; the metrics' leaves lead with [n], in the order
      of ``lanes``. None when no run of the group has phases. ``state`` is donated.
    evaluate: (state, run=0) -> returns [S, K, E] of deterministic evaluation episodes
      of run ``run``'s lanes.
    evaluate_members: (actor_params [S, K, ...], step [], run=0) -> the same returns, of
      parameters apart from a state (``evaluation_inputs`` copies them).
    finite_params: (state) -> [L, K] bool, whether every floating-point leaf of each
      member's state (parameters, targets, optimiser states, temperature) is finite.
    config: the first run's configuration; configs: every run's.
    lanes: the lanes of each run (``lanes.lane_slices``).
    settings: every lane's ``lanes.Settings``, on the device.
    mesh: the devices the lanes are split over (``sharding``); None for one device.
    place: (tree) -> the tree committed where the programs take it: a state, fresh or
      restored, on its devices (each [L, ...] leaf split over ``mesh``).
  """

  init: Callable[[], TrainState]
  chunk: Callable[[TrainState, int, bool], tuple[TrainState, Metrics]]
  collect: Callable[[TrainState, int], tuple[TrainState, Metrics]]
  train: Callable[[TrainState, int], tuple[TrainState, Metrics]]
  phase: Callable[..., tuple[TrainState, dict[str, np.ndarray]]] | None
  evaluate: Callable[..., jax.Array]
  evaluate_members: Callable[..., jax.Array]
  finite_params: Callable[[TrainState], jax.Array]
  config: Config
  task: envs.MjxTask
  sac: sac_lib.Sac
  replay: replay_lib.Replay
  configs: tuple[Config, ...]
  lanes: tuple[slice, ...]
  settings: lanes_lib.Settings
  mesh: sharding_lib.Mesh | None
  place: Callable[[TrainState], TrainState]


def with_precision(precision: str, fn: Callable) -> Callable:
  """Traces ``fn`` under ``jax.default_matmul_precision(precision)``."""

  def traced(*args, **kwargs):
    with jax.default_matmul_precision(precision):
      return fn(*args, **kwargs)

  return traced


vmap_or_squeeze = lanes_lib.over_lanes  # the name benchmarks and tests know


def seed_batch(config: Config) -> int:
  """The number of seeds advanced as one vmapped batch (``seed_batch``; 0 picks 1 on a
  CPU and every seed elsewhere)."""
  if config.seed_batch:
    return config.seed_batch
  return 1 if jax.default_backend() == 'cpu' else config.num_seeds


def lane_batch(configs: Sequence[Config]) -> int:
  """The lanes advanced as one vmapped batch: ``seed_batch`` of a run alone; for a
  group, 1 on a CPU and every lane elsewhere, unless every run sets one ``seed_batch``
  (which must divide L)."""
  if len(configs) == 1:
    return seed_batch(configs[0])
  size = lanes_lib.num_lanes(configs)
  chosen = {config.seed_batch for config in configs}
  if chosen == {0}:
    return 1 if jax.default_backend() == 'cpu' else size
  if len(chosen) != 1 or size % chosen.pop():
    raise ValueError(f'--seed_batch={sorted(c.seed_batch for c in configs)} is invalid for '
                     f'a group of {size} lanes: must be 0 or one divisor of {size}')
  return configs[0].seed_batch


def eval_batch(config: Config) -> int | None:
  """The evaluation episodes stepped as one batch (``eval_batch``): None for all of
  them (0, or S*K*E), else a divisor of ``eval_episodes``."""
  all_episodes = config.num_seeds * config.ensemble_size * config.eval_episodes
  return None if config.eval_batch in (0, all_episodes) else config.eval_batch


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


# What no program reads (the host loop's fields; the seed, whose keys are data); the
# SAC scalars and phase fields, which are per-lane data or a phase program's kind; and
# the run's size, which the group's lanes replace.
_RUN_FIELDS = ('seed', 'variant', 'total_steps', 'eval_every', 'eval_overlap',
               'log_every', 'checkpoint_every', 'keep_checkpoints', 'out_dir',
               'distill_interval', 'num_devices')
_SCALAR_FIELDS = ('actor_lr', 'critic_lr', 'alpha_lr', 'discount', 'tau', 'init_alpha',
                  'target_entropy_scale')
_PHASE_FIELDS = ('share', 'teacher', 'distill_data', 'distill_epochs', 'distill_batch_size',
                 'distill_sample_batches', 'distill_lr', 'extra_updates')
_SIZE_FIELDS = ('num_seeds', 'seed_batch', 'eval_episodes', 'eval_batch')


def _blank(config: Config, names: tuple[str, ...]) -> Config:
  defaults = Config()
  return dataclasses.replace(config, **{n: getattr(defaults, n) for n in names})


def program_key(config: Config) -> Config:
  """What a lane program depends on: runs with equal keys (they may differ in seed,
  variant, SAC scalars, phase settings, number of seeds, evaluation, ...) train as
  lanes of one program."""
  return _blank(config, _RUN_FIELDS + _SCALAR_FIELDS + _PHASE_FIELDS + _SIZE_FIELDS)


# The host loop's fields that the runs of a group share: one schedule of chunks,
# evaluations and checkpoints (each run keeps its own phase steps).
GROUP_FIELDS = ('total_steps', 'eval_every', 'log_every', 'checkpoint_every',
                'keep_checkpoints', 'eval_overlap', 'num_devices')


def group_key(config: Config) -> tuple:
  """What runs must share to train as lanes of one group: the ``program_key`` and the
  host loop's ``GROUP_FIELDS``."""
  return (program_key(config),) + tuple(getattr(config, n) for n in GROUP_FIELDS)


def evaluation_key(config: Config) -> Config:
  """What a run's evaluation program depends on (its S, E and eval_batch too)."""
  return _blank(config, _RUN_FIELDS + _SCALAR_FIELDS + _PHASE_FIELDS + ('seed_batch',))


def phase_key(config: Config) -> Config:
  """What a phase program depends on: the lane program's key and the phase kind."""
  return dataclasses.replace(program_key(config), **{
      name: getattr(config, name) for name in distill.KIND_FIELDS})


def make_replay(task: envs.MjxTask, capacity: int) -> replay_lib.Replay:
  """The replay buffer of ``task``'s transitions, ``capacity`` rows per lane."""
  obs_size, action_size = task.observation_size, task.action_size
  example = sac_lib.Transition(
      obs=jnp.zeros((obs_size,), jnp.float32), action=jnp.zeros((action_size,), jnp.float32),
      reward=jnp.zeros((), jnp.float32), next_obs=jnp.zeros((obs_size,), jnp.float32),
      termination=jnp.zeros((), jnp.float32), truncation=jnp.zeros((), jnp.float32))
  return replay_lib.make_replay(capacity, example)


@functools.lru_cache(maxsize=None)
def default_task(env: str, solver: str) -> envs.MjxTask:
  """The task of a run built without one, once per process (so runs share programs)."""
  return envs.make(env, solver=solver)


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


# -- the programs ---------------------------------------------------------------------


class _Programs(NamedTuple):
  """The jitted lane programs shared by every group of one ``program_key``, L and
  batch."""

  init: Callable[[jax.Array, lanes_lib.Settings], TrainState]
  chunk: Callable[..., tuple[TrainState, Metrics]]
  finite_params: Callable[[TrainState], jax.Array]
  parts: Parts


@functools.lru_cache(maxsize=None)
def _lane_programs(key: Config, task: envs.MjxTask, batch: int,
                   mesh: sharding_lib.Mesh | None = None) -> _Programs:
  """``mesh``: each device runs the programs on its own block of lanes (None: one
  device)."""
  parts = make_parts(key, task)
  init_fn = functools.partial(init, parts)
  chunk_fn = with_precision(key.matmul_precision, functools.partial(chunk, parts, batch))
  finite_fn = lambda state: members_finite(state.members)
  placed = {'init': {}, 'chunk': {}, 'finite': {}}  # each program's out_shardings
  example = None
  if mesh is not None:
    keys, settings, state = _example(parts, key, task)
    example = (state, settings)
    init_fn, placed['init'] = _over_devices(init_fn, mesh, keys, settings)
    finite_fn, placed['finite'] = _over_devices(finite_fn, mesh, state)
  if parts.static:
    chunk_program = _StaticChunks(chunk_fn, mesh, example)
  else:
    if mesh is not None:
      chunk_fn, placed['chunk'] = _over_devices(chunk_fn, mesh, state, np.int32(1),
                                                np.bool_(True), settings)
    chunk_program = jax.jit(_positional(chunk_fn), donate_argnums=0, **placed['chunk'])
  return _Programs(init=jax.jit(init_fn, **placed['init']), chunk=chunk_program,
                   finite_params=jax.jit(finite_fn, **placed['finite']), parts=parts)


class _StaticChunks:
  """The chunk program with static control flow: ``(state, num_steps, learn, settings)``
  runs the program compiled for that ``num_steps`` and ``learn``, compiling it on first
  use (a run's schedule has few chunk lengths: ``log_every`` and the remainders before
  its events). ``example``: (state, settings) of the ranks of ``mesh``'s programs."""

  def __init__(self, fn: Callable, mesh: sharding_lib.Mesh | None, example: tuple | None):
    self._fn, self._mesh, self._example = fn, mesh, example
    self._programs: dict[tuple[int, bool], Callable] = {}

  def __call__(self, state: TrainState, num_steps: int, learn: bool,
               settings: lanes_lib.Settings) -> tuple[TrainState, Metrics]:
    static = (operator.index(num_steps), bool(learn))
    if static not in self._programs:
      fn = lambda state, settings: self._fn(state, *static, settings)
      placed = {}
      if self._mesh is not None:
        fn, placed = _over_devices(fn, self._mesh, *self._example)
      self._programs[static] = jax.jit(fn, donate_argnums=0, **placed)
    return self._programs[static](state, settings)


def _example(parts: Parts, key: Config, task: envs.MjxTask) -> tuple:
  """(keys, settings, state) of one lane, shapes only where it can: the example from
  which a program's shardings are read (they depend on its leaves' ranks alone)."""
  settings = lanes_lib.settings([key], task.action_size)
  keys = jax.ShapeDtypeStruct((1, 2), jnp.uint32)
  return keys, settings, jax.eval_shape(functools.partial(init, parts), keys, settings)


def _over_devices(fn: Callable, mesh: sharding_lib.Mesh, *example
                  ) -> tuple[Callable, dict[str, object]]:
  """``fn`` run by each device of ``mesh`` on its block of every [L, ...] argument and
  result (``example``: arguments of ``fn``'s structure and ranks), and the ``jax.jit``
  argument that fixes its results' shardings to those ``sharding.put`` gives a state:
  left to XLA, an empty leaf may come back replicated over several processes, and the
  next call would compile the program again for it."""
  out = jax.eval_shape(fn, *example)
  return (sharding_lib.over_devices(fn, mesh, sharding_lib.specs(example),
                                    sharding_lib.specs(out)),
          {'out_shardings': sharding_lib.shardings(out, mesh)})


def _positional(fn: Callable) -> Callable:
  """``fn(state, num_steps, learn, settings)`` that also takes its last three by name,
  as the trainer's partials pass them, with its scalars as arrays."""

  def call(state, num_steps, learn, settings):
    return fn(state, jnp.asarray(num_steps, jnp.int32), jnp.asarray(learn, jnp.bool_),
              settings)

  return call


@functools.lru_cache(maxsize=None)
def _evaluation_program(key: Config, task: envs.MjxTask) -> Callable[..., jax.Array]:
  """(base key, actor_params [S, K, ...], step) -> returns [S, K, E] of one run."""
  parts = _lane_programs(program_key(key), task, 1).parts
  episodes = evaluate_lib.make_evaluate(task, parts.sac, key.episode_length,
                                        key.eval_episodes, eval_batch(key))

  def evaluate(base: jax.Array, actor_params: sac_lib.Params, step: jax.Array) -> jax.Array:
    key = jax.random.fold_in(base, step)
    key = jax.random.fold_in(key, 0x5EED)  # evaluation keys apart from training keys
    return episodes(actor_params, key)

  return jax.jit(with_precision(key.matmul_precision, evaluate))


@functools.lru_cache(maxsize=None)
def _phase_program(key: Config, task: envs.MjxTask, batch: int,
                   mesh: sharding_lib.Mesh | None = None) -> Callable[..., tuple]:
  """(state, settings [L], lanes) -> (state, metrics): one phase of the lanes ``lanes``,
  all of the kind of ``key``: lanes [n] and metrics [n, ...]; with ``mesh``, each
  device's local lanes [D, m] (``sharding.local_lanes``) and metrics [D * m, ...]."""
  parts = _lane_programs(program_key(key), task, 1).parts
  phase = distill.make_phase(key, parts.sac, parts.replay)
  fn = with_precision(key.matmul_precision, functools.partial(phases, phase, batch))
  placed = {}
  if mesh is not None:
    _, settings, state = _example(parts, key, task)
    local = fn
    fn, placed = _over_devices(lambda state, settings, lanes: local(state, settings, lanes[0]),
                               mesh, state, settings, np.zeros((1, 1), np.int32))
  return jax.jit(fn, donate_argnums=0, **placed)


def _phase_lanes(lanes: list[int], num_lanes: int, mesh: sharding_lib.Mesh | None
                 ) -> tuple[np.ndarray, list[int | None]]:
  """A phase program's lanes argument for ``lanes`` and the lane of each row of its
  metrics (None: a padding row): ``lanes`` themselves on one device; with ``mesh``,
  each device's own lanes as local indices, -1 padded ([D, m]; metrics [D * m])."""
  if mesh is None:
    return np.asarray(lanes, np.int32), list(lanes)
  local = sharding_lib.local_lanes(lanes, num_lanes, mesh)
  per_device = num_lanes // mesh.size
  return local, [lane + d * per_device if lane >= 0 else None
                 for d, row in enumerate(local) for lane in row]


def make_trainer(config: Config, task: envs.MjxTask | None = None) -> Trainer:
  """The jitted programs of one run (validated, variant applied): the group of its
  seeds, sharing programs with every earlier trainer of this process whose keys
  agree."""
  return make_group_trainer([config], task)


def make_group_trainer(configs: Sequence[Config], task: envs.MjxTask | None = None
                       ) -> Trainer:
  """The jitted programs that train ``configs`` (validated, variants applied) as the
  lanes of one program, run r on lanes ``lanes.lane_slices(configs)[r]``.

  Raises:
    ValueError: the runs do not share one ``group_key``, or their ``seed_batch`` does
      not divide the lanes.
  """
  configs = tuple(configs)
  if len({group_key(config) for config in configs}) != 1:
    raise ValueError('the runs of a group must share their group_key (task, K, network '
                     'and batch sizes, replay capacity, episode length, warm-up, length, '
                     'evaluation, logging and checkpoint schedules)')
  keys = {program_key(config) for config in configs}
  config = configs[0]
  task = task if task is not None else default_task(config.env, config.solver)
  batch = lane_batch(configs)
  num_lanes = lanes_lib.num_lanes(configs)
  mesh = sharding_lib.lane_mesh(config.num_devices, num_lanes)
  if mesh.size == 1:
    mesh, device = None, mesh.devices.flat[0]
    place = lambda tree: jax.device_put(tree, device)
  else:
    sharding_lib.check_lanes(num_lanes, mesh)
    batch = math.gcd(batch, num_lanes // mesh.size)  # of each device's lanes
    place = functools.partial(sharding_lib.put, mesh=mesh)
  programs = _lane_programs(keys.pop(), task, batch, mesh)
  slices = lanes_lib.lane_slices(configs)
  # Each run's evaluation runs on the device of its first lane, or on this process's
  # first where another process holds that lane (``processes``: the primary evaluates).
  devices = [device if mesh is None else
             mesh.devices.flat[s.start // (num_lanes // mesh.size)] for s in slices]
  devices = [d if d.process_index == jax.process_index() else jax.local_devices()[0]
             for d in devices]
  settings = place(lanes_lib.settings(configs, task.action_size))
  initial_keys = place(lanes_lib.lane_keys(configs))
  # The base key is an argument, not a constant of the programs, so runs that differ
  # only in --seed share their compiled programs.
  bases = [jax.random.PRNGKey(c.seed) for c in configs]
  evaluations = [_evaluation_program(evaluation_key(c), task) for c in configs]

  def evaluate_members(actor_params, step, run: int = 0):
    # A run's actors (small) on one device, where its evaluation runs as it would alone.
    actor_params, step = jax.device_put((actor_params, step), devices[run])
    return evaluations[run](bases[run], actor_params, step)

  def evaluate(state: TrainState, run: int = 0):
    actors = jax.tree.map(lambda x: x[slices[run]], state.members.actor_params)
    return evaluate_members(actors, state.step, run)

  phase_lanes = [lane for c, s in zip(configs, slices) if c.has_phases
                 for lane in range(s.start, s.stop)]
  phase = None
  if phase_lanes:
    run_of_lane = np.concatenate([np.full(c.num_seeds, r) for r, c in enumerate(configs)])

    def phase(state: TrainState, lanes: Sequence[int] | None = None):
      lanes = list(phase_lanes if lanes is None else lanes)
      by_kind: dict[tuple, list[int]] = {}
      for lane in lanes:
        by_kind.setdefault(distill.phase_kind(configs[run_of_lane[lane]]), []).append(lane)
      merged: dict[str, np.ndarray] = {}
      for kind_lanes in by_kind.values():
        program = _phase_program(phase_key(configs[run_of_lane[kind_lanes[0]]]), task,
                                 batch, mesh)
        at, where = _phase_lanes(kind_lanes, num_lanes, mesh)
        state, metrics = program(state, settings, place(at))
        metrics = processes.fetch(metrics)
        rows = [(i, lanes.index(lane)) for i, lane in enumerate(where) if lane is not None]
        got, put = [i for i, _ in rows], [j for _, j in rows]
        for name, value in metrics.items():
          value = np.asarray(value)
          if name not in merged:
            merged[name] = np.zeros((len(lanes),) + value.shape[1:], value.dtype)
          merged[name][put] = value[got]
      return state, merged

  return Trainer(
      init=functools.partial(programs.init, initial_keys, settings),
      chunk=functools.partial(programs.chunk, settings=settings),
      collect=functools.partial(programs.chunk, learn=False, settings=settings),
      train=functools.partial(programs.chunk, learn=True, settings=settings),
      phase=phase, evaluate=evaluate, evaluate_members=evaluate_members,
      finite_params=programs.finite_params, config=config, task=task,
      sac=programs.parts.sac, replay=programs.parts.replay, configs=configs, lanes=slices,
      settings=settings, mesh=mesh, place=place)
