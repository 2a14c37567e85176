"""The training program: every seed and member advanced in one jitted loop.

One environment step of one seed (paper Algorithm 1, lines 9-13): the acting member
(uniform random actions during warm-up) acts, the task steps and resets itself at the
end of an episode, the transition goes into the seed's shared replay buffer, the
episode statistics are updated, and every member does its SAC update on its own
minibatch. A step is vmapped over a batch of ``seed_batch`` seeds and the members'
updates over [K] inside it; an axis of length 1 is squeezed instead of vmapped
(``vmap_or_squeeze``). A chunk of steps is one ``lax.fori_loop`` whose trip count is a
traced argument, so chunks of any length reuse one compiled program and the host
touches the state only between chunks. Warm-up and learning chunks are the same
program too (``Trainer.chunk``): whether a chunk learns is a traced flag (it picks the
action and sets the trip count of the step's update loop), so a run compiles its step
once, not twice. With several batches of seeds (the CPU's
default is one seed per batch), the batches run one after another, each through the
whole chunk: on an accelerator all seeds in one batch is fastest; on a CPU a batch's
working set (parameters, optimiser states and activations of b x K members) had better
fit in cache (docs/BENCHMARKS.md). A batch takes its slice of the per-seed state once per chunk, except the replay buffers,
which its inserts and samples index in place (``Replay.add_at``, ``Replay.sample_at``).

Periodic work (distillation phases, evaluation) happens at steps that every seed
shares, so it runs between chunks (``Trainer.phase``, ``Trainer.evaluate``) and never as
a masked select inside the per-step computation (spec §7); ``schedule.py`` decides when.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from piekd_mjx import distill
from piekd_mjx import ensemble as ensemble_lib
from piekd_mjx import evaluate as evaluate_lib
from piekd_mjx import replay as replay_lib
from piekd_mjx import sac as sac_lib
from piekd_mjx import schedule
from piekd_mjx import envs
from piekd_mjx.config import Config
from piekd_mjx.envs.wrappers import TrainingWrapper

Metrics = dict[str, jax.Array]

# The SAC metrics averaged over a chunk, per seed and member.
SAC_METRICS = ('sac/critic_loss', 'sac/actor_loss', 'sac/alpha_loss', 'sac/alpha',
               'sac/entropy', 'sac/q_mean')
# The numerical health of a chunk, per seed and member: the first step whose SAC
# metrics were not all finite (-1 if none), and whether the member state is finite at
# the chunk's end.
HEALTH_METRICS = ('health/nonfinite_loss_step', 'health/finite_params')


@flax.struct.dataclass
class TrainState:
  """Everything a run carries; every leaf of the per-seed parts leads with [S]."""

  members: sac_lib.MemberState  # leaves [S, K, ...]
  replay: replay_lib.ReplayState  # data [S, C, W], position [S], size [S]
  env_state: envs.State  # the training environments, leaves [S, ...]
  ensemble: ensemble_lib.EnsembleState  # member selection and R_k, leaves [S, ...]
  key: jax.Array  # [S, 2] uint32, each seed's PRNG key
  step: jax.Array  # [] int32, environment steps taken by every seed
  num_phases: jax.Array  # [] int32, phases run so far


class Trainer(NamedTuple):
  """The jitted programs of a run and the static pieces they were built from.

  Attributes:
    init: () -> TrainState for ``config.num_seeds`` seeds.
    chunk: (state, num_steps, learn) -> (state, metrics): the one jitted program
      behind ``collect`` (learn=False) and ``train`` (learn=True); ``learn`` is traced.
    collect: (state, num_steps) -> (state, metrics): warm-up steps, uniform random
      actions, no update. ``state`` is donated.
    train: (state, num_steps) -> (state, metrics): steps with the acting member's
      actions and SAC updates of every member; metrics are the chunk means of
      ``SAC_METRICS`` and the ``HEALTH_METRICS``, each [S, K]. ``state`` is donated.
    phase: (state) -> (state, metrics): one knowledge-sharing phase of every seed, or
      None when the variant has none. ``state`` is donated.
    evaluate: (state) -> returns [S, K, E] of deterministic evaluation episodes.
    evaluate_members: (actor_params [S, K, ...], step []) -> the same returns, of
      parameters apart from a state (``evaluation_inputs`` copies them);
      evaluate(state) is evaluate_members(state's actors, state.step).
    finite_params: (state) -> [S, K] bool, whether every floating-point leaf of each
      member's state (parameters, targets, optimiser states, temperature) is finite.
  """

  init: Callable[[], TrainState]
  chunk: Callable[[TrainState, int, bool], tuple[TrainState, Metrics]]
  collect: Callable[[TrainState, int], tuple[TrainState, Metrics]]
  train: Callable[[TrainState, int], tuple[TrainState, Metrics]]
  phase: Callable[[TrainState], tuple[TrainState, Metrics]] | None
  evaluate: Callable[[TrainState], jax.Array]
  evaluate_members: Callable[[sac_lib.Params, jax.Array], jax.Array]
  finite_params: Callable[[TrainState], jax.Array]
  config: Config
  task: envs.MjxTask
  sac: sac_lib.Sac
  replay: replay_lib.Replay


def with_precision(precision: str, fn: Callable) -> Callable:
  """Traces ``fn`` under ``jax.default_matmul_precision(precision)``."""

  def traced(*args, **kwargs):
    with jax.default_matmul_precision(precision):
      return fn(*args, **kwargs)

  return traced


def vmap_or_squeeze(fn: Callable, size: int) -> Callable:
  """``jax.vmap(fn)`` over the leading axis (of length ``size``) of every argument.

  For ``size == 1`` it calls ``fn`` on the arguments with that axis removed and puts
  the axis back on the results instead: the same computation, but a vmap over one
  element is not free on a CPU, where the batched solver loop selects its whole carry
  on every iteration (docs/BENCHMARKS.md).
  """
  if size != 1:
    return jax.vmap(fn)

  def squeezed(*args):
    out = fn(*jax.tree.map(lambda x: jax.lax.squeeze(x, (0,)), args))
    return jax.tree.map(lambda x: jax.lax.expand_dims(x, (0,)), out)

  return squeezed


def seed_batch(config: Config) -> int:
  """The number of seeds advanced as one vmapped batch (``seed_batch``; 0 picks 1 on a
  CPU and every seed elsewhere)."""
  if config.seed_batch:
    return config.seed_batch
  return 1 if jax.default_backend() == 'cpu' else config.num_seeds


def eval_batch(config: Config) -> int | None:
  """The evaluation episodes stepped as one batch (``eval_batch``): None for all of
  them (0, or S*K*E), else a divisor of ``eval_episodes``."""
  all_episodes = config.num_seeds * config.ensemble_size * config.eval_episodes
  return None if config.eval_batch in (0, all_episodes) else config.eval_batch


# The fields of a TrainState that a batch of seeds takes its slice of (leaves [S, ...]);
# the replay buffers, by far the largest, are indexed in place instead.
BATCH_FIELDS = ('members', 'env_state', 'ensemble', 'key')


def batch_part(state: TrainState, fn: Callable, *others: TrainState) -> TrainState:
  """``state`` with ``fn`` applied to every leaf of its ``BATCH_FIELDS`` (together with
  the same leaves of ``others``); the other fields are kept."""
  return state.replace(**{
      name: jax.tree.map(fn, getattr(state, name), *(getattr(o, name) for o in others))
      for name in BATCH_FIELDS})


def members_finite(members: sac_lib.MemberState) -> jax.Array:
  """[S, K] bool: every floating-point leaf of each member (leaves [S, K, ...]) is
  finite; reduces over every axis but the first two."""
  flags = [jnp.isfinite(x).reshape(x.shape[:2] + (-1,)).all(-1)
           for x in jax.tree.leaves(members) if jnp.issubdtype(x.dtype, jnp.floating)]
  return jnp.stack(flags).all(0)


# Fields that no program of a trainer reads (the host loop's, and the seed, which is an
# argument), and the phase's own fields, which only the phase program reads.
_RUN_FIELDS = ('seed', 'variant', 'total_steps', 'eval_every', 'eval_overlap',
               'log_every', 'checkpoint_every', 'keep_checkpoints', 'out_dir',
               'distill_interval')
_PHASE_FIELDS = ('share', 'teacher', 'distill_data', 'distill_epochs', 'distill_batch_size',
                 'distill_sample_batches', 'distill_lr', 'extra_updates')


def evaluation_inputs(state: TrainState) -> tuple[sac_lib.Params, jax.Array]:
  """What an evaluation of ``state`` reads: the actors [S, K, ...] and the step, as
  arrays of their own, so that the chunk that donates ``state`` may run while they are
  evaluated."""
  return jax.tree.map(jnp.copy, (state.members.actor_params, state.step))


def _blank(config: Config, names: tuple[str, ...]) -> Config:
  defaults = Config()
  return dataclasses.replace(config, **{n: getattr(defaults, n) for n in names})


def program_key(config: Config) -> Config:
  """What the init, chunk and evaluation programs depend on: runs with equal keys (they
  may differ in seed, variant, teacher, interval, data mode, ...) share them."""
  return _blank(config, _RUN_FIELDS + _PHASE_FIELDS)


def phase_key(config: Config) -> Config:
  """What the phase program depends on."""
  return _blank(config, _RUN_FIELDS)


class _Programs(NamedTuple):
  """The jitted programs shared by every run of one ``program_key``."""

  init: Callable[[jax.Array], TrainState]
  chunk: Callable[[TrainState, int, bool], tuple[TrainState, Metrics]]
  evaluate: Callable[[jax.Array, sac_lib.Params, jax.Array], jax.Array]
  finite_params: Callable[[TrainState], jax.Array]
  sac: sac_lib.Sac
  replay: replay_lib.Replay


def make_replay(task: envs.MjxTask, capacity: int) -> replay_lib.Replay:
  """The replay buffer of ``task``'s transitions, ``capacity`` rows per seed."""
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


def make_trainer(config: Config, task: envs.MjxTask | None = None) -> Trainer:
  """The jitted programs of ``config`` (already validated, variant applied), shared with
  every earlier trainer of this process on the same task and ``program_key`` (and, for
  the phase, ``phase_key``)."""
  task = task if task is not None else default_task(config.env, config.solver)
  programs = _step_programs(program_key(config), task)
  phase = _phase_program(phase_key(config), task) if schedule.has_phases(config) else None
  # The base key is an argument, not a constant of the programs, so runs that differ
  # only in --seed share their compiled programs.
  base_key = jax.random.PRNGKey(config.seed)
  evaluate_members = functools.partial(programs.evaluate, base_key)
  return Trainer(
      init=functools.partial(programs.init, base_key), chunk=programs.chunk,
      collect=functools.partial(programs.chunk, learn=False),
      train=functools.partial(programs.chunk, learn=True), phase=phase,
      evaluate=lambda state: evaluate_members(state.members.actor_params, state.step),
      evaluate_members=evaluate_members, finite_params=programs.finite_params,
      config=config, task=task, sac=programs.sac, replay=programs.replay)


@functools.lru_cache(maxsize=None)
def _step_programs(config: Config, task: envs.MjxTask) -> _Programs:
  """Builds the init, chunk and evaluation programs of a ``program_key``."""
  env = TrainingWrapper(task, config.episode_length)
  obs_size, action_size = task.observation_size, task.action_size
  num_seeds, num_members = config.num_seeds, config.ensemble_size
  sac = sac_lib.make_sac(config, obs_size, action_size)
  replay = make_replay(task, config.replay_capacity)
  evaluate_episodes = evaluate_lib.make_evaluate(task, sac, config.episode_length,
                                                 config.eval_episodes, eval_batch(config))

  def init_seed(key):
    key_members, key_env, key_ensemble, key_next = jax.random.split(key, 4)
    members = jax.vmap(sac.init)(jax.random.split(key_members, num_members))
    return (members, replay.init(), env.reset(key_env),
            ensemble_lib.init(key_ensemble, num_members, config.recent_episodes), key_next)

  def init(base: jax.Array) -> TrainState:
    keys = jax.vmap(lambda s: jax.random.fold_in(base, s))(jnp.arange(num_seeds))
    members, replay_state, env_state, ensemble_state, keys = jax.vmap(init_seed)(keys)
    return TrainState(members=members, replay=replay_state, env_state=env_state,
                      ensemble=ensemble_state, key=keys, step=jnp.zeros((), jnp.int32),
                      num_phases=jnp.zeros((), jnp.int32))

  per_member = functools.partial(vmap_or_squeeze, size=num_members)
  batch = seed_batch(config)
  num_batches = num_seeds // batch

  def seed_act(members, env_state, ensemble_state, key, learn: jax.Array):
    """One environment step of one seed: the acting member (or, warming up, uniform
    noise) acts, the task steps, the episode statistics follow. Returns the next
    environment state, the transition, the ensemble state, the key of this step's
    updates and the seed's next key."""
    key_act, key_select, key_update, key_next = jax.random.split(key, 4)
    # Both actions are computed (the actor's is one small forward pass) and ``learn``
    # picks one: a select of two [A] vectors, where a cond would pass the members'
    # parameters through a branch.
    actor_params = jax.tree.map(lambda x: x[ensemble_state.acting], members.actor_params)
    action = jnp.where(learn, sac.act(actor_params, env_state.obs, key_act),  # [A]
                       jax.random.uniform(key_act, (action_size,), minval=-1.0, maxval=1.0))
    next_state = env.step_without_restart(env_state, action)
    transition = sac_lib.Transition(
        obs=env_state.obs, action=action, reward=next_state.reward,
        next_obs=next_state.info['next_obs'], termination=next_state.done,
        truncation=next_state.info['truncation'])
    ensemble_state = ensemble_lib.record_step(
        ensemble_state, env.ended(next_state), next_state.info['completed_return'],
        key_select)
    return next_state, transition, ensemble_state, key_update, key_next

  def update_keys(key_update):
    """Per update of one seed's step: the K members' sampling and SGD keys [U, K]."""
    sample_keys, sgd_keys = [], []
    for _ in range(config.updates_per_step):
      key_update, key_sample, key_sgd = jax.random.split(key_update, 3)
      sample_keys.append(jax.random.split(key_sample, num_members))
      sgd_keys.append(jax.random.split(key_sgd, num_members))
    return jnp.stack(sample_keys), jnp.stack(sgd_keys)

  # One batch of seeds: its environment steps, restarts and updates vmapped over its
  # seeds (squeezed for one), the members' updates over [K] inside.
  per_batch_seed = functools.partial(vmap_or_squeeze, size=batch)
  update = per_batch_seed(per_member(sac.update))  # members [b, K], minibatches [b, K, B]

  def step(state: TrainState, seeds: jax.Array, learn: jax.Array
           ) -> tuple[TrainState, Metrics]:
    """One environment step of the batch of seeds ``seeds`` [b], and (if ``learn``, a
    traced bool) the members' updates. ``state``'s per-seed leaves lead with [b], except
    the replay buffers: all S of them, which the batch's insert and samples index in
    place (a scatter and a gather into data [S, C, W]; the buffer is never sliced or
    copied). Warm-up and learning steps are one program: the updates are a loop of
    ``updates_per_step`` trips when learning and none when warming up, so the members'
    state stays in place (where a ``lax.cond`` returning it unchanged from one branch
    makes XLA copy it every step); the minibatches are drawn either way, before that loop."""
    env_state, transition, ensemble_state, key_update, keys = per_batch_seed(
        functools.partial(seed_act, learn=learn))(
            state.members, state.env_state, state.ensemble, state.key)
    replay_state = replay.add_at(state.replay, seeds, transition)
    sample_keys, sgd_keys = per_batch_seed(update_keys)(key_update)  # [b, U, K, 2]
    batches = [replay.sample_at(replay_state, seeds, sample_keys[:, u], config.batch_size)
               for u in range(config.updates_per_step)]  # leaves [b, K, B, ...] each
    batches = jax.tree.map(lambda *x: jnp.stack(x), *batches)  # leaves [U, b, K, B, ...]

    def one_update(u, carry):
      members, sums = carry
      members, metrics = update(members, jax.tree.map(lambda x: x[u], batches),
                                sgd_keys[:, u])
      return members, {name: sums[name] + metrics[name] for name in SAC_METRICS}

    zeros = {name: jnp.zeros((batch, num_members), jnp.float32) for name in SAC_METRICS}
    num_updates = jnp.where(learn, config.updates_per_step, 0)
    members, sums = jax.lax.fori_loop(0, num_updates, one_update, (state.members, zeros))
    metrics = {name: sums[name] / config.updates_per_step for name in SAC_METRICS}
    # Episodes end rarely: restart the ended ones only on steps where one did (a
    # vmapped lax.cond would be a select of both branches).
    env_state = env.restart_ended(env_state, over=per_batch_seed)
    state = state.replace(members=members, replay=replay_state, env_state=env_state,
                          ensemble=ensemble_state, key=keys, step=state.step + 1)
    return state, metrics

  def batch_chunk(state: TrainState, seeds: jax.Array, num_steps,
                  learn: jax.Array) -> tuple[TrainState, Metrics]:
    """``num_steps`` steps of the batch of seeds ``seeds`` (see ``step``); the sums of
    the SAC metrics and the first step with a non-finite one (-1 if none), [b, K]."""
    def body(_, carry):
      state, sums, nonfinite_step = carry
      state, metrics = step(state, seeds, learn)
      finite = jnp.stack([jnp.isfinite(metrics[k]) for k in SAC_METRICS]).all(0)  # [b, K]
      nonfinite_step = jnp.where((nonfinite_step < 0) & ~finite, state.step,
                                 nonfinite_step)
      return state, {k: sums[k] + metrics[k] for k in SAC_METRICS}, nonfinite_step

    zeros = {k: jnp.zeros((batch, num_members), jnp.float32) for k in SAC_METRICS}
    none = jnp.full((batch, num_members), -1, jnp.int32)
    state, sums, nonfinite_step = jax.lax.fori_loop(0, num_steps, body,
                                                    (state, zeros, none))
    return state, {**sums, 'health/nonfinite_loss_step': nonfinite_step}

  def chunk(state: TrainState, num_steps, learn) -> tuple[TrainState, Metrics]:
    num_steps = jnp.asarray(num_steps, jnp.int32)
    learn = jnp.asarray(learn, jnp.bool_)
    if num_batches == 1:
      state, metrics = batch_chunk(state, jnp.arange(num_seeds), num_steps, learn)
    else:
      # The batches one after another, each through the whole chunk: its slice of
      # the (small) per-seed state is read and written back once per chunk.
      def body(i, carry):
        full, metrics = carry
        first = i * batch
        take = lambda x: jax.lax.dynamic_slice_in_dim(x, first, batch)
        put = lambda x, y: jax.lax.dynamic_update_slice_in_dim(x, y, first, 0)
        part, part_metrics = batch_chunk(batch_part(full, take),
                                         first + jnp.arange(batch), num_steps, learn)
        full = batch_part(full, put, part).replace(replay=part.replay)
        return full, jax.tree.map(put, metrics, part_metrics)

      metrics = {k: jnp.zeros((num_seeds, num_members), jnp.float32)
                 for k in SAC_METRICS}
      metrics['health/nonfinite_loss_step'] = jnp.zeros((num_seeds, num_members),
                                                        jnp.int32)
      steps = state.step
      state, metrics = jax.lax.fori_loop(0, num_batches, body, (state, metrics))
      state = state.replace(step=steps + num_steps)
    count = jnp.maximum(num_steps, 1).astype(jnp.float32)
    metrics = {k: v / count if k in SAC_METRICS else v for k, v in metrics.items()}
    metrics['health/finite_params'] = members_finite(state.members)
    return state, metrics

  # Warm-up (collect) and learning (train) chunks are one compiled program.
  chunk_program = jax.jit(with_precision(config.matmul_precision, chunk), donate_argnums=0)

  def evaluate(base: jax.Array, actor_params: sac_lib.Params, step: jax.Array) -> jax.Array:
    key = jax.random.fold_in(base, step)
    key = jax.random.fold_in(key, 0x5EED)  # evaluation keys apart from training keys
    return evaluate_episodes(actor_params, key)

  return _Programs(
      init=jax.jit(init), chunk=chunk_program,
      evaluate=jax.jit(with_precision(config.matmul_precision, evaluate)),
      finite_params=jax.jit(lambda state: members_finite(state.members)), sac=sac,
      replay=replay)


@functools.lru_cache(maxsize=None)
def _phase_program(config: Config, task: envs.MjxTask
                   ) -> Callable[[TrainState], tuple[TrainState, Metrics]]:
  """Builds the phase program of a ``phase_key``: one phase of every seed."""
  programs = _step_programs(program_key(config), task)
  seed_phase = distill.make_phase(config, programs.sac, programs.replay)
  per_seed = vmap_or_squeeze(seed_phase, config.num_seeds)

  def phase(state: TrainState) -> tuple[TrainState, Metrics]:
    keys = jax.vmap(lambda k: jax.random.split(k, 2))(state.key)  # [S, 2, 2]
    members, metrics = per_seed(state.members, state.replay, state.ensemble, keys[:, 0])
    state = state.replace(members=members, key=keys[:, 1], num_phases=state.num_phases + 1)
    return state, metrics

  return jax.jit(with_precision(config.matmul_precision, phase), donate_argnums=0)

