"""The cost of an evaluation at the paper's protocol against the training it follows.

For each task, S seeds of K members: one evaluation (``eval_episodes`` deterministic
episodes of every member of every seed, at most 1,000 steps), for each ``--eval_batch``
(all in one batch, one at a time, ...), is timed in the two ways a run can take it
(``--eval_overlap``), alternating:

* ``waits``: training stops while the evaluation runs; it costs its own time E.
* ``overlapped``: the evaluation runs on a second thread (as ``run.py`` does) while
  the main thread trains in chunks of ``--chunk`` steps until it has ended; over those
  T seconds training advanced n steps, which alone take n / r (r: the steps/s of
  training alone, timed in the same round), so the evaluation cost T - n / r.

The share of evaluation in a run's wall time is cost / (cost + 10,000 / r): the
evaluation against the ``eval_every`` steps of training before it. The actors are
freshly initialised, or those of a trained run's newest checkpoint (``--actors_from``,
its seeds repeated up to S). On halfcheetah every episode runs 1,000 steps whatever the
actors. On hopper an untrained policy falls within tens of steps, so hopper wants
trained actors; ``--full_length`` turns hopper's termination off instead (the same
physics and rewards, no early end): every episode then runs 1,000 steps, most of them
lying on the floor, whose contacts make a step several times dearer than a hopping
one's (a pessimistic bound, not a trained policy's cost).

  python benchmarks/evaluation.py --tasks=halfcheetah,hopper \
      --actors_from=RUNS/hopper-piekd-... --out=docs/benchmarks/evaluation.json
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import threading
import time

from absl import app
from absl import flags

from piekd_mjx import jax_setup

FLAGS = flags.FLAGS
flags.DEFINE_list('tasks', ['halfcheetah', 'hopper'], 'Tasks.')
flags.DEFINE_integer('num_seeds', 5, 'S.')
flags.DEFINE_integer('ensemble_size', 3, 'K.')
flags.DEFINE_integer('eval_episodes', 20, 'E.')
flags.DEFINE_integer('eval_every', 10_000, 'Training steps an evaluation follows.')
flags.DEFINE_integer('train_steps', 500, 'Steps of the timed chunk of training alone.')
flags.DEFINE_integer('chunk', 100, 'Steps per training chunk while an evaluation overlaps.')
flags.DEFINE_integer('repeats', 2, 'Rounds; each times training alone and both ways.')
flags.DEFINE_list('eval_batch', ['0', '1'],
                  '--eval_batch values to time: 0 (all S*K*E episodes in one batch), 1 (one '
                  'episode at a time, unbatched), or a divisor of --eval_episodes.')
flags.DEFINE_list('actors_from', [],
                  "Run directories: a task's row evaluates the actors of its run's newest "
                  'checkpoint (seeds repeated up to S) instead of fresh ones.')
flags.DEFINE_bool('full_length', False,
                  "Hopper's episodes never terminate (every episode 1,000 steps).")
flags.DEFINE_string('compilation_cache_dir', '', "JAX's persistent cache ('' for none).")
flags.DEFINE_string('out', '', 'Write the results as JSON here, as they come.')


def make_task(name: str):
  """The task ``name``; hopper without termination under ``--full_length``."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from piekd_mjx import envs  # pylint: disable=g-import-not-at-top
  cls = envs.make_class(name)
  if not (FLAGS.full_length and name == 'hopper'):
    return cls()

  class NeverFalls(cls):
    """Hopper's physics and rewards; an episode ends only at the time limit."""

    def _reward_and_termination(self, data0, data, action, obs):
      reward, _, metrics = super()._reward_and_termination(data0, data, action, obs)
      return reward, jnp.zeros((), bool), metrics

  return NeverFalls()


def trained_actors(task_name: str, num_seeds: int, num_members: int):
  """The actors [S, K, ...] of the newest checkpoint of the ``--actors_from`` run of
  ``task_name`` (its seeds repeated up to ``num_seeds``), its directory and step; None
  if there is none."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from piekd_mjx import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from piekd_mjx import config as config_lib  # pylint: disable=g-import-not-at-top
  from piekd_mjx import programs as programs_lib  # pylint: disable=g-import-not-at-top
  for run_dir in FLAGS.actors_from:
    with open(f'{run_dir}/config.json', encoding='utf-8') as f:
      config = config_lib.from_dict(json.load(f))
    if config.env != task_name:
      continue
    assert config.ensemble_size == num_members, (run_dir, config.ensemble_size)
    trainer = programs_lib.make_trainer(config)
    checkpointer = checkpoint_lib.Checkpointer(run_dir, config.keep_checkpoints,
                                               jax.eval_shape(trainer.init))
    state, host, _ = checkpointer.restore(print)
    checkpointer.close()
    seeds = jnp.arange(num_seeds) % config.num_seeds
    actors = jax.tree.map(lambda x: x[seeds], state.members.actor_params)
    return actors, run_dir, host['step']
  return None


def time_train(trainer, state, num_steps: int):
  import jax  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  state, metrics = trainer.train(state, num_steps)
  jax.block_until_ready(metrics)
  return state, time.perf_counter() - start


def time_waits(evaluate, inputs) -> float:
  import jax  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  jax.block_until_ready(evaluate(*inputs))
  return time.perf_counter() - start


def time_overlapped(trainer, state, evaluate, inputs):
  """(state, T, n, evaluation seconds): training in chunks while ``evaluate(*inputs)``
  runs on a thread, as ``run.py`` overlaps them."""
  import jax  # pylint: disable=g-import-not-at-top
  done = threading.Event()
  seconds = []

  def work():
    begin = time.perf_counter()
    jax.block_until_ready(evaluate(*inputs))
    seconds.append(time.perf_counter() - begin)
    done.set()

  start = time.perf_counter()
  thread = threading.Thread(target=work)
  thread.start()
  steps = 0
  while not done.is_set():
    state, metrics = trainer.train(state, FLAGS.chunk)
    jax.block_until_ready(metrics)
    steps += FLAGS.chunk
  thread.join()
  return state, time.perf_counter() - start, steps, seconds[0]


def measure(task_name: str, results: dict) -> None:
  """One task's row: per round, training alone, then each ``--eval_batch`` waited for
  and overlapped. The evaluated actors are the same in every round (fresh or
  ``--actors_from``), apart from the training state, which trains on."""
  import jax  # pylint: disable=g-import-not-at-top
  from piekd_mjx import config as config_lib  # pylint: disable=g-import-not-at-top
  from piekd_mjx import programs as programs_lib  # pylint: disable=g-import-not-at-top
  from piekd_mjx import train  # pylint: disable=g-import-not-at-top
  config = config_lib.apply_variant(config_lib.Config(
      env=task_name, variant='ensemble_sac', num_seeds=FLAGS.num_seeds,
      ensemble_size=FLAGS.ensemble_size, eval_episodes=FLAGS.eval_episodes,
      replay_capacity=100_000, warmup_steps=1000), {'ensemble_size'})
  task = make_task(task_name)
  trainer = programs_lib.make_trainer(config, task)
  evaluators = {batch: programs_lib.make_trainer(
      dataclasses.replace(config, eval_batch=batch), task).evaluate_members
                for batch in map(int, FLAGS.eval_batch)}
  state = trainer.init()
  state, _ = trainer.collect(state, 1000)
  state, _ = time_train(trainer, state, FLAGS.chunk)  # compiles
  row = {'task': task_name, 'S': config.num_seeds, 'K': config.ensemble_size,
         'E': config.eval_episodes, 'full_length': FLAGS.full_length and task_name == 'hopper'}
  actors, step = train.evaluation_inputs(state)
  trained = trained_actors(task_name, config.num_seeds, config.ensemble_size)
  if trained is not None:
    actors, row['actors_from'], row['actors_step'] = trained
  inputs = jax.block_until_ready((actors, step))
  returns = {batch: jax.block_until_ready(evaluate(*inputs))  # compiles
             for batch, evaluate in evaluators.items()}
  row.update(mean_return=float(returns[int(FLAGS.eval_batch[0])].mean()), rounds=[])
  results['rows'].append(row)
  for _ in range(FLAGS.repeats):
    state, seconds = time_train(trainer, state, FLAGS.train_steps)
    rate = FLAGS.train_steps / seconds
    train_seconds = FLAGS.eval_every / rate
    round_ = {'train_steps_per_second': rate, 'eval_batch': {}}
    for batch, evaluate in evaluators.items():
      waits = time_waits(evaluate, inputs)
      state, overlap_seconds, steps, eval_seconds = time_overlapped(
          trainer, state, evaluate, inputs)
      cost = overlap_seconds - steps / rate
      round_['eval_batch'][batch] = {
          'waits_seconds': waits, 'overlapped_seconds': overlap_seconds,
          'overlapped_steps': steps, 'overlapped_evaluation_seconds': eval_seconds,
          'overlapped_cost_seconds': cost, 'share_waits': waits / (waits + train_seconds),
          'share_overlapped': cost / (cost + train_seconds)}
    row['rounds'].append(round_)
    print(json.dumps({'task': task_name, **round_}), flush=True)
    if FLAGS.out:
      with open(FLAGS.out, 'w', encoding='utf-8') as f:
        json.dump(results, f, indent=2)


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.compilation_cache_dir:
    jax_setup.compilation_cache(FLAGS.compilation_cache_dir)
  results = {'argv': sys.argv, 'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
             'machine': platform.processor() or platform.machine(),
             'jax': jax.__version__, 'rows': []}
  for task_name in FLAGS.tasks:
    measure(task_name, results)


if __name__ == '__main__':
  app.run(main, argv=sys.argv)
