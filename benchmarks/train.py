"""Benchmarks training throughput: the one-program trainer, its parts, and baselines.

Everything is measured side by side in one process on this machine. A rate is
environment steps per second of ONE seed (every member of that seed doing its SAC
update at every step); "seed-steps/s" is S times that, the work of all S seeds.

1. Ours: for every task in ``--tasks``, S in ``--num_seeds`` and K in
   ``--ensemble_sizes``: ``make_trainer`` with ``--hidden_sizes`` networks and
   ``--batch_size`` minibatches, ``--warmup_steps`` of ``trainer.collect`` to fill the
   buffer, one untimed ``trainer.train(state, n)``, then ``--repeats``
   timed calls of ``n = --train_steps`` steps; the median is reported. K = 1 is
   ``vanilla_sac``, K > 1 the same members on a shared buffer without sharing
   (``ensemble_sac``).
2. Replay capacity: S = 1, K = 1 on ``--capacity_task`` at every
   ``--replay_capacities``, to show that the step time does not grow with C.
3. Parts timed alone, for S = 1 and every K in ``--parts_ensemble_sizes``: a jitted
   ``lax.scan`` of n bare SAC updates of K members (``sac.update`` over the stacked
   ``MemberState`` as the trainer runs it, vmapped over K > 1, a fixed random
   minibatch per member), and a jitted
   ``lax.scan`` of n bare task steps (``envs.make(task)``, uniform random actions in
   the control range; a terminated episode goes back to the state the call started
   from, as in benchmarks/envs.py). ratio = (whole training step) / (K bare updates
   + one bare task step); the target is at most ``--ratio_target``. Beside it, outside
   the ratio, the task step as the trainer runs it (``TrainingWrapper`` for S = 1, ended
   episodes restarted under one ``lax.cond``).
4. Seeds in one program: seed-steps/s of S > 1 seeds in one program (in batches of
   ``--seed_batch``) against the same S seeds trained one after another: each seed's
   slice of the S-seed run's warmed-up state trained alone by the S = 1 program, with
   as many timed calls (the grid's S = 1 row, seed 0 alone, is shown beside it).
5. PIEKD (``--piekd``, on ``--piekd_task``): the train chunk of the ``piekd`` variant
   (K = 3) against ``vanilla_sac`` (K = 1) and against K = 3 without sharing (the same
   per-step program: a phase runs between chunks, never inside one); and the time of
   one ``full`` distillation phase (``trainer.phase``) at each
   ``--phase_buffer_sizes`` (buffer filled by ``trainer.collect``; one untimed call
   compiles), per phase and per distillation step, with the amortised rate of one
   phase every ``distill_interval`` steps.
6. Baselines, each optional and skipped with a message when its import fails (brax's
   also on jax >= 0.10, which its trainers do not run on):
   brax's SAC (``--brax``) on our task objects with num_envs=1, ``--hidden_sizes``
   networks, ``--batch_size`` minibatches, one update per step (grad_updates_per_step=1),
   no observation normalisation, its steps/s taken from
   its ``progress_fn`` (``training/sps``, measured by brax around each training epoch,
   evaluation excluded; the first epoch, which compiles, is dropped); and
   Stable-Baselines3's SAC (``--sb3``) on Gymnasium (MuJoCo C) with torch on each of
   ``--torch_threads`` thread counts, timed on the steps after ``learning_starts``.

The full benchmark, from the repository's root (tens of minutes on 2 CPU cores: every
configuration compiles its own program; torch on 2 threads suffers badly when other
processes load the cores, hence 1 as well):

  python benchmarks/train.py --torch_threads=1,2 --out=docs/benchmarks/train.json \
      --markdown

and render a JSON file written earlier as Markdown (for docs/BENCHMARKS.md) with:

  python benchmarks/train.py --from_json=docs/benchmarks/train.json --markdown

The baselines need ``pip install '.[bench]'`` (Stable-Baselines3 and torch).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shlex
import statistics
import sys
import time
from typing import Any, Callable, Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import machine  # benchmarks/machine.py, beside this script
import rollout  # benchmarks/rollout.py, beside this script
from piekd_mjx import envs
from piekd_mjx import jax_setup
from piekd_mjx import lanes as lanes_lib
from piekd_mjx import programs as programs_lib
from piekd_mjx import sac as sac_lib
from piekd_mjx import train as train_lib
from piekd_mjx.config import apply_variant
from piekd_mjx.config import Config
from piekd_mjx.envs.wrappers import TrainingWrapper

FLAGS = flags.FLAGS

flags.DEFINE_list('tasks', ['halfcheetah', 'hopper'], 'Tasks to benchmark (piekd_mjx names).')
flags.DEFINE_list('num_seeds', ['1', '5'], 'Numbers of seeds S trained in one program.')
flags.DEFINE_list('ensemble_sizes', ['1', '3'], 'Ensemble sizes K.')
flags.DEFINE_list('hidden_sizes', ['256', '256'],
                  'Hidden layer sizes of every network (ours and the baselines).')
flags.DEFINE_integer('batch_size', 256, 'SAC minibatch size (ours and the baselines).')
flags.DEFINE_integer('replay_capacity', 1_000_000,
                     'Replay capacity per seed of every measurement but section 2 '
                     '(and of the baselines).')
flags.DEFINE_string('solver', 'faithful', "The tasks' physics solver: 'faithful' or 'fast'.")
flags.DEFINE_integer('seed_batch', 0,
                     'Config.seed_batch: seeds advanced as one vmapped batch, the batches '
                     'one after another (0: 1 on a CPU, all seeds on an accelerator; '
                     'capped at each measurement\'s S).')
flags.DEFINE_integer('warmup_steps', 1000,
                     'trainer.collect steps before timing (at least --batch_size).')
flags.DEFINE_integer('train_steps', 200, 'Environment steps per timed trainer.train call.')
flags.DEFINE_integer('repeats', 5, 'Timed repeats per measurement (the median is reported).')
flags.DEFINE_integer('seed', 0, 'PRNG seed of every measurement.')
flags.DEFINE_bool('capacity', True, 'Section 2: the step time at every --replay_capacities.')
flags.DEFINE_string('capacity_task', '', 'Task of section 2 (default: the first of --tasks).')
flags.DEFINE_list('replay_capacities', ['10000', '1000000'], 'Replay capacities of section 2.')
flags.DEFINE_list('parts_ensemble_sizes', ['1', '3'],
                  'Section 3: ensemble sizes K (S = 1) whose parts are timed alone; '
                  'empty skips the section.')
flags.DEFINE_float('ratio_target', 1.25,
                   'Section 3: the target of (whole step) / (K updates + one task step).')
flags.DEFINE_bool('piekd', True, 'Section 5: the piekd variant and its distillation phase.')
flags.DEFINE_string('piekd_task', '', 'Task of section 5 (default: the first of --tasks).')
flags.DEFINE_list('phase_buffer_sizes', ['10000', '50000'],
                  'Section 5: buffer sizes (transitions) at which one phase is timed.')
flags.DEFINE_bool('brax', True, "Section 6: brax's SAC on our task objects.")
flags.DEFINE_bool('sb3', True, "Section 6: Stable-Baselines3's SAC on Gymnasium.")
flags.DEFINE_integer('baseline_steps', 3000,
                     'Section 6: environment steps of each baseline run (num_timesteps).')
flags.DEFINE_integer('baseline_min_replay', 1000,
                     'Section 6: random/prefill steps before the baselines start updating '
                     "(brax's min_replay_size, SB3's learning_starts).")
flags.DEFINE_list('torch_threads', ['2'],
                  'Section 6: torch.set_num_threads of SB3; one SB3 measurement per value.')
flags.DEFINE_string('out', 'docs/benchmarks/train.json',
                    'Write the results to this JSON file (none if empty); it is rewritten '
                    'after every section, so an interrupted run keeps what it measured.')
flags.DEFINE_bool('markdown', False, 'Print the results as Markdown tables.')
flags.DEFINE_string('from_json', '',
                    'Load results from this JSON file instead of measuring.')
flags.DEFINE_string('compilation_cache_dir', '',
                    "JAX's persistent compilation cache directory; empty (default) "
                    'disables the cache, so first-call times include compilation.')

_PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'mujoco', 'mujoco-mjx', 'brax', 'gymnasium',
             'numpy', 'torch', 'stable-baselines3')

# The spec's value (Config.episode_length), also given to the baselines.
EPISODE_LENGTH = Config.episode_length


def _log(message: str) -> None:
  print(f'[{time.strftime("%H:%M:%S")}] {message}', flush=True)


# -- timing ---------------------------------------------------------------------------


def _rate(steps: int, times: Sequence[float]) -> dict[str, Any]:
  """Steps/s from the median of repeated timings of ``steps`` steps each."""
  median = statistics.median(times)
  return {'steps_per_s': steps / median, 'step_ms': 1e3 * median / steps,
          'steps_per_repeat': steps, 'median_s': median, 'times_s': list(times)}


def _time_carry(fn: Callable[..., Any], carry: tuple, steps: int,
                advance: Callable[[tuple, Any], tuple]) -> dict[str, Any]:
  """First call (untimed warm-up: trace, compile, run) and ``--repeats`` timed calls.

  ``fn(*carry)`` runs ``steps`` steps; ``advance(carry, out)`` is the next call's
  arguments (the outputs replace donated inputs).
  """
  start = time.perf_counter()
  out = jax.block_until_ready(fn(*carry))
  first_s = time.perf_counter() - start
  carry = advance(carry, out)
  times = []
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*carry))
    times.append(time.perf_counter() - start)
    carry = advance(carry, out)
  return {'first_call_s': first_s, **_rate(steps, times)}


# -- ours -----------------------------------------------------------------------------


def make_config(task: str, num_seeds: int, ensemble_size: int, variant: str = '',
                replay_capacity: int | None = None) -> Config:
  """The validated config of one measurement (K = 1: vanilla_sac, else ensemble_sac)."""
  variant = variant or ('vanilla_sac' if ensemble_size == 1 else 'ensemble_sac')
  capacity = FLAGS.replay_capacity if replay_capacity is None else replay_capacity
  phase_sizes = [int(n) for n in FLAGS.phase_buffer_sizes]
  config = Config(
      env=task, variant=variant, num_seeds=num_seeds, seed=FLAGS.seed,
      total_steps=max([Config.total_steps, FLAGS.warmup_steps] + phase_sizes),
      replay_capacity=capacity, batch_size=FLAGS.batch_size,
      warmup_steps=FLAGS.warmup_steps,
      hidden_sizes=tuple(int(h) for h in FLAGS.hidden_sizes), solver=FLAGS.solver,
      ensemble_size=ensemble_size, seed_batch=min(FLAGS.seed_batch, num_seeds))
  config = apply_variant(config, explicit={'ensemble_size'})
  config.validate()
  return config


def _block(state_and_metrics):
  return jax.block_until_ready(state_and_metrics)


def seed_state(state: train_lib.TrainState, s: int) -> train_lib.TrainState:
  """Seed ``s`` of ``state`` as the state of a one-seed run (new arrays: a slice of
  every per-seed leaf, the replay buffer included, and copies of the shared step
  counts, so that donating ``state`` leaves it intact)."""
  return train_lib.select_lanes(state, slice(s, s + 1))


def measure_train(trainer: programs_lib.Trainer,
                  alone: programs_lib.Trainer | None = None) -> dict[str, Any]:
  """Steps/s of ``trainer.train`` after a warm-up of ``--warmup_steps``.

  With ``alone`` (the S = 1 trainer of the same settings), each of the S seeds is also
  trained by itself, one after another, from its slice of the same warmed-up state:
  the S runs in a row that S seeds in one program must not lose to (section 4). Seed s
  of the S-seed run and a one-seed run from its slice are the same computation
  (tests/test_train.py checks that seed trajectories do not depend on S), so the two
  differ only in how the seeds are scheduled.
  """
  config = trainer.config
  state = trainer.init()
  start = time.perf_counter()
  state, _ = _block(trainer.collect(state, FLAGS.warmup_steps))
  collect_first_s = time.perf_counter() - start
  seeds = [_block(seed_state(state, s)) for s in range(config.num_seeds)] if alone else []
  n = FLAGS.train_steps

  def time_train(train, state):
    # ``train`` donates its state: every call gets the state the previous one returned.
    return _time_carry(train, (state, n), n, lambda carry, out: (out[0], n))

  timing = time_train(trainer.train, state)
  rate = timing['steps_per_s']
  row = {
      'task': config.env, 'variant': config.variant, 'num_seeds': config.num_seeds,
      'ensemble_size': config.ensemble_size, 'replay_capacity': config.replay_capacity,
      'replay_mib_per_seed': trainer.replay.capacity * trainer.replay.bytes_per_transition
                             / 2**20,
      'collect_first_call_s': collect_first_s,
      **timing, 'seed_steps_per_s': config.num_seeds * rate,
  }
  if alone:
    per_seed = []
    for s, one in enumerate(seeds):
      per_seed.append(time_train(alone.train, one))
      _log(f'  seed {s} alone: {per_seed[-1]["steps_per_s"]:,.1f} steps/s')
    row['alone'] = {
        'steps_per_s': [t['steps_per_s'] for t in per_seed],
        'median_s': [t['median_s'] for t in per_seed],
        'seed_steps_per_s': config.num_seeds * n / sum(t['median_s'] for t in per_seed)}
  return row


class Measurements:
  """Training measurements keyed by their settings, so sections share them."""

  def __init__(self):
    self.rows: list[dict[str, Any]] = []
    self._tasks: dict[str, envs.MjxTask] = {}
    self._trainers: dict[Config, programs_lib.Trainer] = {}

  def task(self, name: str) -> envs.MjxTask:
    if name not in self._tasks:
      self._tasks[name] = envs.make(name, solver=FLAGS.solver)
    return self._tasks[name]

  def trainer(self, config: Config) -> programs_lib.Trainer:
    """The trainer of ``config``, built (and so compiled) once per process."""
    if config not in self._trainers:
      self._trainers[config] = programs_lib.make_trainer(config, self.task(config.env))
    return self._trainers[config]

  def find(self, task: str, num_seeds: int, ensemble_size: int, variant: str = '',
           replay_capacity: int | None = None) -> dict[str, Any] | None:
    config = make_config(task, num_seeds, ensemble_size, variant, replay_capacity)
    for row in self.rows:
      if (row['task'], row['variant'], row['num_seeds'], row['ensemble_size'],
          row['replay_capacity']) == (config.env, config.variant, config.num_seeds,
                                      config.ensemble_size, config.replay_capacity):
        return row
    return None

  def get(self, task: str, num_seeds: int, ensemble_size: int, variant: str = '',
          replay_capacity: int | None = None) -> dict[str, Any]:
    """The row of these settings, measured now if no section measured it yet."""
    row = self.find(task, num_seeds, ensemble_size, variant, replay_capacity)
    if row is None:
      config = make_config(task, num_seeds, ensemble_size, variant, replay_capacity)
      _log(f'{task}: {config.variant} S={num_seeds} K={config.ensemble_size} '
           f'C={config.replay_capacity:,} ...')
      alone = None
      if num_seeds > 1:
        alone = self.trainer(make_config(task, 1, ensemble_size, variant, replay_capacity))
      row = measure_train(self.trainer(config), alone)
      _log(f'  {row["steps_per_s"]:,.1f} steps/s, {row["seed_steps_per_s"]:,.1f} '
           f'seed-steps/s (first calls of collect and train '
           f'{row["collect_first_call_s"] + row["first_call_s"]:.1f} s)')
      self.rows.append(row)
    return row


# -- section 3: the parts alone -------------------------------------------------------


def _fixed_batch(task: envs.MjxTask, num_members: int, key: jax.Array) -> sac_lib.Transition:
  """One random minibatch per member, leaves [K, B, ...]."""
  shape = (num_members, FLAGS.batch_size)
  key_obs, key_action, key_reward, key_next = jax.random.split(key, 4)
  obs_shape = shape + (task.observation_size,)
  return sac_lib.Transition(
      obs=jax.random.normal(key_obs, obs_shape),
      action=jax.random.uniform(key_action, shape + (task.action_size,),
                                minval=-1.0, maxval=1.0),
      reward=jax.random.normal(key_reward, shape),
      next_obs=jax.random.normal(key_next, obs_shape),
      termination=jnp.zeros(shape), truncation=jnp.zeros(shape))


def measure_update(task: envs.MjxTask, config: Config) -> dict[str, Any]:
  """Rate of a jitted lax.scan of bare vmapped SAC updates of K members."""
  num_members, n = config.ensemble_size, FLAGS.train_steps
  sac = sac_lib.make_sac(config, task.observation_size, task.action_size)
  key_init, key_batch, key = jax.random.split(jax.random.PRNGKey(config.seed), 3)
  members = jax.jit(jax.vmap(lambda k: sac.init(k, sac.default_scalars)))(
      jax.random.split(key_init, num_members))
  batch = _fixed_batch(task, num_members, key_batch)

  def loop(members, batch, key):
    def body(carry, _):
      members, key, sums = carry
      key, key_update = jax.random.split(key)
      one = lambda m, b, k: sac.update(m, b, k, sac.default_scalars)
      members, metrics = lanes_lib.over_lanes(one, num_members)(
          members, batch, jax.random.split(key_update, num_members))
      # Summed as the trainer sums them, so that no metric is dead code in either.
      return (members, key, {k: sums[k] + metrics[k] for k in train_lib.SAC_METRICS}), None

    zeros = {k: jnp.zeros((num_members,), jnp.float32) for k in train_lib.SAC_METRICS}
    (members, key, sums), _ = jax.lax.scan(body, (members, key, zeros), None, length=n)
    return members, key, sums

  fn = jax.jit(programs_lib.with_precision(config.matmul_precision, loop), donate_argnums=0)
  return _time_carry(fn, (members, batch, key), n,
                     lambda carry, out: (out[0], carry[1], out[1]))


def measure_task_step(task: envs.MjxTask) -> dict[str, Any]:
  """Rate of a jitted lax.scan of bare task steps with uniform random actions."""
  low, high, n = task.action_low, task.action_high, FLAGS.train_steps
  key_reset, key = jax.random.split(jax.random.PRNGKey(FLAGS.seed))
  state = jax.jit(task.reset)(key_reset)
  steps = rollout.make_rollout(task, low, high, n)
  return _time_carry(jax.jit(steps), (state, key), n, lambda carry, out: out)


def measure_wrapped_task_step(task: envs.MjxTask) -> dict[str, Any]:
  """Rate of the task step as the trainer runs it: ``TrainingWrapper`` (time limit,
  automatic reset) for S = 1 seed (the seed axis squeezed, as the trainer does with
  ``vmap_or_squeeze``), uniform random actions in [-1, 1] (as ``trainer.collect``). As
  in ``piekd_mjx.train``, the step itself does not restart; one ``lax.cond`` restarts
  the ended episodes only on the steps where one ended, so a reset's physics is paid
  only then.
  """
  env = TrainingWrapper(task, EPISODE_LENGTH)
  n = FLAGS.train_steps

  def rollout(state, key):
    def body(carry, _):
      state, key = carry
      key, key_action = jax.random.split(key)
      action = jax.random.uniform(key_action, (1, task.action_size), minval=-1.0,
                                  maxval=1.0)
      squeeze = functools.partial(lanes_lib.over_lanes, size=1)
      state = squeeze(env.step_without_restart)(state, action)
      state = env.restart_ended(state, over=squeeze)
      return (state, key), None

    (state, key), _ = jax.lax.scan(body, (state, key), None, length=n)
    return state, key

  key_reset, key = jax.random.split(jax.random.PRNGKey(FLAGS.seed))
  state = jax.jit(jax.vmap(env.reset))(key_reset[None])
  return _time_carry(jax.jit(rollout), (state, key), n, lambda carry, out: out)


def measure_parts(measurements: Measurements, tasks: Sequence[str],
                  ensemble_sizes: Sequence[int]) -> list[dict[str, Any]]:
  rows = []
  for name in tasks:
    task = measurements.task(name)
    _log(f'{name}: bare task step ...')
    task_step = measure_task_step(task)
    _log(f'  {task_step["step_ms"]:.3f} ms/step')
    _log(f'{name}: task step as trained (TrainingWrapper, S=1) ...')
    wrapped = measure_wrapped_task_step(task)
    _log(f'  {wrapped["step_ms"]:.3f} ms/step')
    for k in ensemble_sizes:
      whole = measurements.get(name, 1, k)
      _log(f'{name}: bare SAC update of K={k} member(s) ...')
      update = measure_update(task, make_config(name, 1, k))
      denominator = update['step_ms'] + task_step['step_ms']
      ratio = whole['step_ms'] / denominator
      _log(f'  {update["step_ms"]:.3f} ms/update; whole step {whole["step_ms"]:.3f} ms, '
           f'ratio {ratio:.2f}')
      rows.append({'task': name, 'ensemble_size': k, 'train_step_ms': whole['step_ms'],
                   'update_ms': update['step_ms'], 'task_step_ms': task_step['step_ms'],
                   'wrapped_task_step_ms': wrapped['step_ms'],
                   'ratio': ratio, 'target': FLAGS.ratio_target,
                   'update': update, 'task_step': task_step, 'wrapped_task_step': wrapped})
  return rows


# -- section 4: seeds in one program --------------------------------------------------


def seed_rows(measurements: Measurements, tasks: Sequence[str], num_seeds: Sequence[int],
              ensemble_sizes: Sequence[int]) -> list[dict[str, Any]]:
  """S seeds in one program against the same S seeds trained alone one after another
  (and, for reference, the grid's S = 1 row: seed 0 alone, another warm-up)."""
  rows = []
  for name in tasks:
    for k in ensemble_sizes:
      single = measurements.find(name, 1, k)
      for s in num_seeds:
        together = measurements.find(name, s, k)
        if s == 1 or together is None or 'alone' not in together:
          continue
        sequential = together['alone']['seed_steps_per_s']
        rows.append({
            'task': name, 'ensemble_size': k, 'num_seeds': s,
            'seed_steps_per_s': together['seed_steps_per_s'],
            'sequential_seed_steps_per_s': sequential,
            'alone_steps_per_s': together['alone']['steps_per_s'],
            'seed0_steps_per_s': single and single['seed_steps_per_s'],
            'speedup': together['seed_steps_per_s'] / sequential,
        })
  return rows


# -- section 5: PIEKD -----------------------------------------------------------------


def measure_piekd(measurements: Measurements, name: str) -> dict[str, Any]:
  """The piekd train chunk against vanilla_sac and K = 3 without sharing, and phases."""
  result: dict[str, Any] = {'task': name, 'available': False, 'message': '',
                            'train': [], 'phases': []}
  vanilla = measurements.get(name, 1, 1, 'vanilla_sac')
  config = make_config(name, 1, 3, 'piekd')
  no_sharing = measurements.get(name, 1, config.ensemble_size, 'ensemble_sac')
  result.update(distill_interval=config.distill_interval, distill_data=config.distill_data,
                distill_epochs=config.distill_epochs,
                distill_batch_size=config.distill_batch_size)
  result['train'] = [{'label': 'vanilla_sac', **_train_summary(vanilla)},
                     {'label': 'ensemble_sac (no sharing)', **_train_summary(no_sharing)}]
  trainer = programs_lib.make_trainer(config, measurements.task(name))
  if trainer.phase is None:
    result['message'] = 'trainer.phase is None for the piekd variant; no phase to time'
    _log(result['message'])
    return result
  result['available'] = True
  _log(f'{name}: piekd S=1 K={config.ensemble_size} train chunk ...')
  piekd_row = measure_train(trainer)
  measurements.rows.append(piekd_row)
  _log(f'  {piekd_row["steps_per_s"]:,.1f} steps/s')
  result['train'].append({'label': 'piekd', **_train_summary(piekd_row)})

  state = trainer.init()
  compiled = False
  for size in sorted(int(n) for n in FLAGS.phase_buffer_sizes):
    stored = int(state.replay.size[0])
    if size > stored:
      state, _ = _block(trainer.collect(state, size - stored))
    stored = int(state.replay.size[0])
    _log(f'{name}: piekd phase ({config.distill_data}) on {stored:,} transitions ...')
    if not compiled:  # One untimed call compiles (the buffer size is dynamic).
      start = time.perf_counter()
      state, _ = _block(trainer.phase(state))
      first_s = time.perf_counter() - start
      compiled = True
    else:
      first_s = None
    times, metrics = [], {}
    for _ in range(FLAGS.repeats):
      start = time.perf_counter()
      state, metrics = _block(trainer.phase(state))
      times.append(time.perf_counter() - start)
    num_updates = int(np.asarray(metrics['distill/num_updates'])[0])
    skipped = bool(np.asarray(metrics['distill/skipped'])[0])
    phase_s = statistics.median(times)
    interval = config.distill_interval
    amortised = interval / (interval / piekd_row['steps_per_s'] + phase_s)
    row = {'buffer_size': stored, 'first_call_s': first_s, 'phase_s': phase_s,
           'times_s': times, 'num_updates': num_updates, 'skipped': skipped,
           'update_ms': 1e3 * phase_s / num_updates if num_updates else None,
           'amortised_steps_per_s': amortised}
    _log(f'  {phase_s:.2f} s per phase, {num_updates} distillation steps'
         + (f', {row["update_ms"]:.2f} ms each' if num_updates else '')
         + (' (SKIPPED: no teacher could be elected)' if skipped else '')
         + f'; one phase per {interval:,} steps: {amortised:,.1f} steps/s')
    result['phases'].append(row)
  return result


def _train_summary(row: dict[str, Any]) -> dict[str, Any]:
  return {k: row[k] for k in ('variant', 'ensemble_size', 'steps_per_s', 'step_ms',
                              'seed_steps_per_s')}


# -- section 6: baselines -------------------------------------------------------------


def _segment_rates(marks: Sequence[tuple[int, float]], segments: int) -> list[float]:
  """Steps/s of ``segments`` consecutive equal stretches of (step, time) marks."""
  bounds = np.linspace(0, len(marks) - 1, segments + 1).round().astype(int)
  rates = []
  for a, b in zip(bounds[:-1], bounds[1:]):
    (step_a, time_a), (step_b, time_b) = marks[a], marks[b]
    if step_b > step_a:
      rates.append((step_b - step_a) / (time_b - time_a))
  return rates


def measure_brax(name: str, hidden_sizes: Sequence[int]) -> dict[str, Any]:
  """brax's SAC on ``envs.make(name)``; steps/s of each training epoch after the first."""
  row: dict[str, Any] = {'impl': 'brax', 'task': name}
  if jax.__version_info__ >= (0, 10):
    return {**row, 'status': 'skipped',
            'message': "brax 0.14.2's trainers call jax.device_put_replicated, removed in "
                       f'jax 0.10 (this is jax {jax.__version__})'}
  try:
    from brax.training.agents.sac import networks as brax_sac_networks  # pylint: disable=g-import-not-at-top
    from brax.training.agents.sac import train as brax_sac  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    return {**row, 'status': 'skipped', 'message': f'brax SAC not importable: {error}'}
  records: list[dict[str, Any]] = []

  def progress(step, metrics):
    sps = metrics.get('training/sps')
    records.append({'step': int(step), 'time': time.perf_counter(),
                    'training_sps': None if sps is None else float(sps)})

  epochs = FLAGS.repeats + 1  # the first compiles and is dropped
  start = time.perf_counter()
  try:
    brax_sac.train(
        environment=envs.make(name, solver=FLAGS.solver),
        num_timesteps=FLAGS.baseline_steps, episode_length=EPISODE_LENGTH, num_envs=1,
        num_eval_envs=1, learning_rate=Config.actor_lr, discounting=Config.discount,
        seed=FLAGS.seed, batch_size=FLAGS.batch_size, num_evals=epochs + 1,
        normalize_observations=False, tau=Config.tau,
        min_replay_size=FLAGS.baseline_min_replay, max_replay_size=FLAGS.replay_capacity,
        grad_updates_per_step=1,
        network_factory=functools.partial(brax_sac_networks.make_sac_networks,
                                          hidden_layer_sizes=tuple(hidden_sizes)),
        progress_fn=progress)
  except Exception as error:  # pylint: disable=broad-except
    return {**row, 'status': 'failed', 'message': f'{type(error).__name__}: {error}'}
  wall_s = time.perf_counter() - start
  steady = [r['training_sps'] for r in records[2:] if r['training_sps'] is not None]
  # Between two evaluations: one training epoch plus one evaluation episode.
  intervals = [(b['step'] - a['step']) / (b['time'] - a['time'])
               for a, b in zip(records[1:], records[2:])]
  if not steady:
    return {**row, 'status': 'failed', 'records': records,
            'message': 'progress_fn reported no training/sps after the first epoch'}
  return {**row, 'status': 'ok', 'steps_per_s': statistics.median(steady),
          'rates': steady, 'interval_steps_per_s': intervals, 'records': records,
          'first_epoch_steps_per_s': records[1]['training_sps'], 'wall_s': wall_s,
          'timed': 'training/sps of every training epoch after the first (brax times the '
                   'epoch alone, evaluation excluded)'}


def measure_sb3(name: str, hidden_sizes: Sequence[int], threads: int) -> dict[str, Any]:
  """Stable-Baselines3's SAC on Gymnasium; steps/s after learning_starts."""
  gym_id = envs.GYMNASIUM_IDS[name]
  row: dict[str, Any] = {'impl': 'sb3', 'task': name, 'source': gym_id,
                         'torch_threads': threads}
  try:
    import gymnasium  # pylint: disable=g-import-not-at-top
    import stable_baselines3  # pylint: disable=g-import-not-at-top
    from stable_baselines3.common.callbacks import BaseCallback  # pylint: disable=g-import-not-at-top
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    return {**row, 'status': 'skipped',
            'message': f"not importable ({error}); pip install '.[bench]'"}
  torch.set_num_threads(threads)

  class Clock(BaseCallback):
    """(num_timesteps, time) at every environment step."""

    def __init__(self):
      super().__init__()
      self.marks: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
      self.marks.append((self.num_timesteps, time.perf_counter()))
      return True

  env = gymnasium.make(gym_id)
  model = stable_baselines3.SAC(
      'MlpPolicy', env, learning_rate=Config.actor_lr, buffer_size=FLAGS.replay_capacity,
      learning_starts=FLAGS.baseline_min_replay, batch_size=FLAGS.batch_size,
      tau=Config.tau, gamma=Config.discount, train_freq=1, gradient_steps=1,
      policy_kwargs=dict(net_arch=list(hidden_sizes)), seed=FLAGS.seed, device='cpu',
      verbose=0)
  clock = Clock()
  start = time.perf_counter()
  try:
    model.learn(total_timesteps=FLAGS.baseline_steps, callback=clock)
  except Exception as error:  # pylint: disable=broad-except
    return {**row, 'status': 'failed', 'message': f'{type(error).__name__}: {error}'}
  finally:
    env.close()
  wall_s = time.perf_counter() - start
  # SB3 calls the callback after each environment step and then, past learning_starts,
  # does the gradient step: from the mark of step learning_starts + 1 on, each interval
  # holds one update and one environment step.
  marks = [m for m in clock.marks if m[0] > FLAGS.baseline_min_replay]
  rates = _segment_rates(marks, FLAGS.repeats + 1)[1:]  # the first stretch warms up
  if not rates:
    return {**row, 'status': 'failed',
            'message': 'too few steps after learning_starts to time'}
  return {**row, 'status': 'ok', 'steps_per_s': statistics.median(rates), 'rates': rates,
          'wall_s': wall_s, 'torch_threads': torch.get_num_threads(),
          'timed': f'{len(marks) - 1} steps after learning_starts in {FLAGS.repeats + 1} '
                   'stretches, the first dropped'}


def measure_baselines(tasks: Sequence[str], hidden_sizes: Sequence[int],
                      torch_threads: Sequence[int]) -> list[dict[str, Any]]:
  rows = []
  for name in tasks:
    runs = []
    if FLAGS.brax:
      runs.append(('brax', functools.partial(measure_brax, name, hidden_sizes)))
    if FLAGS.sb3:
      runs += [(f'sb3, {t} torch thread(s)', functools.partial(measure_sb3, name,
                                                              hidden_sizes, t))
               for t in torch_threads]
    for label, measure in runs:
      _log(f'{name}: baseline {label} ...')
      row = measure()
      if row['status'] == 'ok':
        _log(f'  {row["steps_per_s"]:,.1f} steps/s')
      else:
        _log(f'  {row["status"]}: {row["message"]}')
      rows.append(row)
  return rows


IMPL_LABELS = {'brax': "brax SAC (MJX, our task)", 'sb3': 'SB3 SAC (Gymnasium, torch)'}


# -- machine and rendering (as in benchmarks/envs.py) ---------------------------------


def _f(value: float | None, digits: int = 0) -> str:
  return '-' if value is None else f'{value:,.{digits}f}'


def _tables(results: dict[str, Any]) -> list[tuple[str, list[list[str]]]]:
  """(caption, header-first rows) of every table."""
  settings = results['flags']
  tables = []
  rows = [['task', 'variant', 'S', 'K', 'C', 'steps/s (one seed)', 'seed-steps/s',
           'ms/step', 'first calls (s)']]
  for r in results['train']:
    rows.append([r['task'], r['variant'], str(r['num_seeds']), str(r['ensemble_size']),
                 f'{r["replay_capacity"]:,}', _f(r['steps_per_s'], 1),
                 _f(r['seed_steps_per_s'], 1), _f(r['step_ms'], 2),
                 _f(r['collect_first_call_s'] + r['first_call_s'], 1)])
  tables.append((
      f'1. Training throughput: environment steps per second of one seed (each step: '
      f'act, task step, replay insert, one SAC update of every member on its own '
      f'minibatch of {settings["batch_size"]}); seed-steps/s = S x that. Median of '
      f'{settings["repeats"]} calls of trainer.train({settings["train_steps"]}) after '
      f'{settings["warmup_steps"]:,} warm-up steps and one untimed call; first calls: the '
      f'seconds of the warm-up call of trainer.collect and the first trainer.train call, '
      f'compilation included. Every row measured in the same run, including those of '
      f'the sections below.', rows))

  capacity = results.get('capacity') or []
  if capacity:
    rows = [['task', 'C', 'replay MiB/seed', 'steps/s', 'ms/step', 'vs smallest C']]
    base = capacity[0]['step_ms']
    for r in capacity:
      rows.append([r['task'], f'{r["replay_capacity"]:,}', _f(r['replay_mib_per_seed'], 1),
                   _f(r['steps_per_s'], 1), _f(r['step_ms'], 2),
                   f'{r["step_ms"] / base:.2f}x'])
    tables.append(('2. Replay capacity (S=1, K=1): the step time at each capacity.', rows))

  parts = results.get('parts') or []
  if parts:
    rows = [['task', 'K', 'whole step (ms)', 'K updates (ms)', 'task step (ms)',
             'ratio', f'<= {settings["ratio_target"]:g}', 'task step as trained (ms)']]
    for r in parts:
      rows.append([r['task'], str(r['ensemble_size']), _f(r['train_step_ms'], 3),
                   _f(r['update_ms'], 3), _f(r['task_step_ms'], 3), f'{r["ratio"]:.2f}',
                   'yes' if r['ratio'] <= r['target'] else 'NO',
                   _f(r.get('wrapped_task_step_ms'), 3)])
    tables.append((
        '3. Parts timed alone (S=1): a jitted lax.scan of bare SAC updates of the K '
        'members (sac.update as the trainer runs it, fixed minibatch) and of bare task '
        'steps (envs.make(task), random actions); ratio = whole training step / (K updates + '
        'one task step). The last column, outside the ratio, is the task step as the '
        'trainer runs it: TrainingWrapper (time limit, automatic reset) for S=1, ended '
        'episodes restarted under one lax.cond only on steps where one ended.',
        rows))

  seeds = results.get('seeds') or []
  if seeds:
    rows = [['task', 'K', 'S', 'seed-steps/s, S in one program',
             'seed-steps/s, the S seeds alone in a row', 'speedup',
             'steps/s of each seed alone', 'S=1 row (seed 0)']]
    for r in seeds:
      alone = r.get('alone_steps_per_s')
      if alone:
        rows.append([r['task'], str(r['ensemble_size']), str(r['num_seeds']),
                     _f(r['seed_steps_per_s'], 1), _f(r['sequential_seed_steps_per_s'], 1),
                     f'{r["speedup"]:.2f}x', ' / '.join(_f(v, 1) for v in alone),
                     _f(r.get('seed0_steps_per_s'), 1)])
      else:  # a file written before the seeds-alone baseline: compared with seed 0
        rows.append([r['task'], str(r['ensemble_size']), str(r['num_seeds']),
                     _f(r['seed_steps_per_s'], 1), '-', f'{r["speedup"]:.2f}x (vs seed 0)',
                     '-', _f(r['sequential_seed_steps_per_s'], 1)])
    tables.append((
        '4. Seeds in one program against the same seeds trained one after another: each '
        'seed of the S-seed run, from its slice of the same warmed-up state, trained '
        'alone by the S=1 program (median of as many calls); seed-steps/s in a row = '
        'S x steps / (sum of the seeds\' median call times).', rows))

  piekd = results.get('piekd')
  if piekd:
    rows = [['variant', 'K', 'steps/s', 'ms/step']]
    for r in piekd['train']:
      rows.append([r['label'], str(r['ensemble_size']), _f(r['steps_per_s'], 1),
                   _f(r['step_ms'], 2)])
    caption = (f'5a. PIEKD on {piekd["task"]} (S=1): the train chunk, no phase inside it.')
    if piekd.get('message'):
      caption += f' Note: {piekd["message"]}.'
    tables.append((caption, rows))
    if piekd['phases']:
      rows = [['buffer', 'phase (s)', 'distillation steps', 'ms/step',
               f'steps/s with a phase every {piekd["distill_interval"]:,}']]
      for r in piekd['phases']:
        rows.append([f'{r["buffer_size"]:,}', _f(r['phase_s'], 2), str(r['num_updates'])
                     + (' (skipped)' if r['skipped'] else ''), _f(r['update_ms'], 2),
                     _f(r['amortised_steps_per_s'], 1)])
      tables.append((
          f'5b. One distillation phase of piekd ({piekd["distill_data"]}: '
          f'{piekd["distill_epochs"]} epochs over the buffer in minibatches of '
          f'{piekd["distill_batch_size"]}), median of {settings["repeats"]} calls; one '
          'untimed call at the first buffer size compiled it.', rows))

  baselines = results.get('baselines') or []
  if baselines:
    rows = [['implementation', 'task', 'steps/s', 'ours S=1 K=1', 'ours / baseline',
             'note']]
    ours = {r['task']: r for r in results['train']
            if (r['variant'], r['num_seeds'], r['ensemble_size'], r['replay_capacity'])
            == ('vanilla_sac', 1, 1, settings['replay_capacity'])}
    for r in baselines:
      mine = ours.get(r['task'])
      ok = r['status'] == 'ok'
      label = IMPL_LABELS[r['impl']]
      if r.get('torch_threads'):
        label += f', {r["torch_threads"]} thread{"s" if r["torch_threads"] > 1 else ""}'
      rows.append([label, r['task'],
                   _f(r.get('steps_per_s'), 1), _f(mine and mine['steps_per_s'], 1),
                   f'{mine["steps_per_s"] / r["steps_per_s"]:.2f}x' if ok and mine else '-',
                   r.get('timed', '') if ok else f'{r["status"]}: {r["message"]}'])
    tables.append((
        f'6. Baselines: one environment, {settings["hidden_sizes"]} networks, batch '
        f'{settings["batch_size"]}, one update per step, {settings["baseline_steps"]:,} '
        f'steps with {settings["baseline_min_replay"]:,} before updates start.', rows))
  return tables


def _numeric(rows: list[list[str]]) -> list[bool]:
  """Per column: whether every body cell is a number (aligned right) or '-'."""
  def is_number(cell: str) -> bool:
    return cell == '-' or re.fullmatch(r'[-+]?[\d,]*\.?\d+x?( \(skipped\))?', cell) is not None
  return [all(is_number(r[i]) for r in rows[1:]) for i in range(len(rows[0]))]


def _plain_table(rows: list[list[str]]) -> str:
  """Rows as aligned text columns (the first row is the header)."""
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  right = _numeric(rows)
  lines = ['  '.join(c.rjust(w) if right[i] else c.ljust(w)
                     for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
  lines.insert(1, '  '.join('-' * w for w in widths))
  return '\n'.join(lines)


def _markdown_table(rows: list[list[str]]) -> str:
  """Rows as a Markdown table (the first row is the header)."""
  align = ['--:' if right else '---' for right in _numeric(rows)]
  return '\n'.join('| ' + ' | '.join(r) + ' |' for r in [rows[0], align] + rows[1:])


def render_text(results: dict[str, Any]) -> str:
  """The results as plain-text tables for the terminal."""
  return '\n\n'.join(f'{caption}\n{_plain_table(rows)}'
                     for caption, rows in _tables(results))


def render_markdown(results: dict[str, Any]) -> str:
  """The results as Markdown (machine, command and tables) for docs/BENCHMARKS.md."""
  info = results['machine']
  versions = ', '.join(f'{k} {v}' for k, v in info['versions'].items() if v)
  lines = [
      f'Measured {info["date"]} on {info["cpu_model"] or info["processor"]} '
      f'({info["cpu_count"]} CPUs, {", ".join(info["jax_devices"])}); {versions}; '
      f'load average {info["loadavg_before"][0]:.2f} before, '
      f'{info["loadavg_after"][0]:.2f} after.',
      '',
      f'Command: `{results["command"]}`',
      '',
  ]
  for caption, rows in _tables(results):
    lines += [caption, '', _markdown_table(rows), '']
  return '\n'.join(lines)


# -- main -----------------------------------------------------------------------------


def _ints(name: str) -> list[int]:
  try:
    values = [int(v) for v in FLAGS[name].value]
  except ValueError:
    raise app.UsageError(f'--{name} must be a comma-separated list of integers') from None
  if any(v <= 0 for v in values):
    raise app.UsageError(f'--{name} must hold positive integers')
  return values


def _save(results: dict[str, Any]) -> None:
  if FLAGS.out:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, 'w', encoding='utf-8') as f:
      json.dump(results, f, indent=1)
      f.write('\n')


def run() -> dict[str, Any]:
  """Measures every section, saving the results after each one."""
  tasks = list(FLAGS.tasks)
  unknown = sorted(set(tasks) - set(envs.names()))
  if unknown or not tasks:
    raise app.UsageError(f'unknown tasks {unknown}; valid: {", ".join(envs.names())}')
  num_seeds, ensemble_sizes = _ints('num_seeds'), _ints('ensemble_sizes')
  hidden_sizes = _ints('hidden_sizes')
  capacities, phase_sizes = _ints('replay_capacities'), _ints('phase_buffer_sizes')
  parts_sizes, torch_threads = _ints('parts_ensemble_sizes'), _ints('torch_threads')
  capacity_task = FLAGS.capacity_task or tasks[0]
  piekd_task = FLAGS.piekd_task or tasks[0]
  for name in (capacity_task, piekd_task):
    if name not in envs.names():
      raise app.UsageError(f'unknown task {name!r}; valid: {", ".join(envs.names())}')
  if FLAGS.baseline_steps - FLAGS.baseline_min_replay < FLAGS.repeats + 1:
    raise app.UsageError('--baseline_steps must exceed --baseline_min_replay by at least '
                         '--repeats + 1')
  try:
    for s in num_seeds:
      make_config(tasks[0], s, 1)
  except ValueError as error:
    raise app.UsageError(str(error)) from None
  if FLAGS.compilation_cache_dir:
    jax_setup.compilation_cache(FLAGS.compilation_cache_dir)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  else:
    jax.config.update('jax_enable_compilation_cache', False)

  results: dict[str, Any] = {
      'benchmark': 'train',
      'command': shlex.join([os.path.basename(sys.executable)] + sys.argv),
      'argv': list(sys.argv),
      'flags': {
          'tasks': tasks, 'num_seeds': num_seeds, 'ensemble_sizes': ensemble_sizes,
          'hidden_sizes': hidden_sizes, 'batch_size': FLAGS.batch_size,
          'replay_capacity': FLAGS.replay_capacity, 'solver': FLAGS.solver,
          'seed_batch': FLAGS.seed_batch,
          'warmup_steps': FLAGS.warmup_steps, 'train_steps': FLAGS.train_steps,
          'repeats': FLAGS.repeats, 'seed': FLAGS.seed, 'capacity': FLAGS.capacity,
          'capacity_task': capacity_task, 'replay_capacities': capacities,
          'parts_ensemble_sizes': parts_sizes, 'ratio_target': FLAGS.ratio_target,
          'piekd': FLAGS.piekd, 'piekd_task': piekd_task,
          'phase_buffer_sizes': phase_sizes, 'brax': FLAGS.brax, 'sb3': FLAGS.sb3,
          'baseline_steps': FLAGS.baseline_steps,
          'baseline_min_replay': FLAGS.baseline_min_replay,
          'torch_threads': torch_threads,
          'compilation_cache_dir': FLAGS.compilation_cache_dir,
      },
      'machine': {**machine.machine_info(_PACKAGES), 'loadavg_before': list(os.getloadavg())},
      'config': dataclasses.asdict(make_config(tasks[0], 1, 1)),
  }
  measurements = Measurements()
  results['train'] = measurements.rows  # filled as the sections measure

  def save():
    results['machine']['loadavg_after'] = list(os.getloadavg())
    _save(results)

  # 1. The grid.
  for name in tasks:
    for s in num_seeds:
      for k in ensemble_sizes:
        measurements.get(name, s, k)
  save()
  # 2. Replay capacity.
  if FLAGS.capacity:
    results['capacity'] = [measurements.get(capacity_task, 1, 1, replay_capacity=c)
                           for c in sorted(capacities)]
    save()
  # 3. The parts alone.
  if parts_sizes:
    results['parts'] = measure_parts(measurements, tasks, parts_sizes)
    save()
  # 4. Seeds in one program (from the grid).
  results['seeds'] = seed_rows(measurements, tasks, num_seeds, ensemble_sizes)
  # 5. PIEKD.
  if FLAGS.piekd:
    results['piekd'] = measure_piekd(measurements, piekd_task)
    save()
  # 6. Baselines.
  if FLAGS.brax or FLAGS.sb3:
    results['baselines'] = measure_baselines(tasks, hidden_sizes, torch_threads)
    for name in tasks:  # the row they are compared with
      measurements.get(name, 1, 1)
  save()
  return results


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if FLAGS.from_json:
    with open(FLAGS.from_json, encoding='utf-8') as f:
      results = json.load(f)
  else:
    results = run()
  print()
  print(render_text(results))
  if FLAGS.markdown:
    print()
    print(render_markdown(results))
  if FLAGS.out and not FLAGS.from_json:
    print(f'\nwrote {FLAGS.out}')


if __name__ == '__main__':
  app.run(main)
