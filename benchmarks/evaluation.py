"""The cost of an evaluation at the paper's protocol against the training it follows.

For each task, S seeds of K members: one evaluation (``eval_episodes`` deterministic
episodes of every member of every seed, all in one batch, at most 1,000 steps) is
timed in the two ways a run can take it (``--eval_overlap``), alternating:

* ``waits``: training stops while the evaluation runs; it costs its own time E.
* ``overlapped``: the evaluation runs on a second thread (as ``run.py`` does) while
  the main thread trains in chunks of ``--chunk`` steps until it has ended; over those
  T seconds training advanced n steps, which alone take n / r (r: the steps/s of
  training alone, timed in the same round), so the evaluation cost T - n / r.

The share of evaluation in a run's wall time is cost / (cost + 10,000 / r): the
evaluation against the ``eval_every`` steps of training before it. On halfcheetah
every episode runs 1,000 steps, as a trained policy's do. On hopper an untrained
policy falls within tens of steps; ``--full_length`` (default) turns hopper's
termination off (the same physics and rewards, no early end), so that every episode
runs 1,000 steps as a trained hopper's do: the cost of a late evaluation, the upper
bound of the run's.

  python benchmarks/evaluation.py --tasks=halfcheetah,hopper --out=docs/benchmarks/evaluation.json
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

FLAGS = flags.FLAGS
flags.DEFINE_list('tasks', ['halfcheetah', 'hopper'], 'Tasks.')
flags.DEFINE_integer('num_seeds', 5, 'S.')
flags.DEFINE_integer('ensemble_size', 3, 'K.')
flags.DEFINE_integer('eval_episodes', 20, 'E.')
flags.DEFINE_integer('eval_every', 10_000, 'Training steps an evaluation follows.')
flags.DEFINE_integer('train_steps', 500, 'Steps of the timed chunk of training alone.')
flags.DEFINE_integer('chunk', 100, 'Steps per training chunk while an evaluation overlaps.')
flags.DEFINE_integer('repeats', 2, 'Rounds; each times training alone and both ways.')
flags.DEFINE_bool('full_length', True,
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


def time_train(trainer, state, num_steps: int):
  import jax  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  state, metrics = trainer.train(state, num_steps)
  jax.block_until_ready(metrics)
  return state, time.perf_counter() - start


def time_waits(trainer, state) -> float:
  import jax  # pylint: disable=g-import-not-at-top
  from piekd_mjx import train  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  jax.block_until_ready(trainer.evaluate_members(*train.evaluation_inputs(state)))
  return time.perf_counter() - start


def time_overlapped(trainer, state):
  """(state, T, n, evaluation seconds): training in chunks while an evaluation of a
  copy of the actors runs on a thread, as ``run.py`` does."""
  import jax  # pylint: disable=g-import-not-at-top
  from piekd_mjx import train  # pylint: disable=g-import-not-at-top
  inputs = jax.block_until_ready(train.evaluation_inputs(state))
  done = threading.Event()
  seconds = []

  def work():
    begin = time.perf_counter()
    jax.block_until_ready(trainer.evaluate_members(*inputs))
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
  import jax  # pylint: disable=g-import-not-at-top
  from piekd_mjx import config as config_lib  # pylint: disable=g-import-not-at-top
  from piekd_mjx import train  # pylint: disable=g-import-not-at-top
  config = config_lib.apply_variant(config_lib.Config(
      env=task_name, variant='ensemble_sac', num_seeds=FLAGS.num_seeds,
      ensemble_size=FLAGS.ensemble_size, eval_episodes=FLAGS.eval_episodes,
      replay_capacity=100_000, warmup_steps=1000), {'ensemble_size'})
  trainer = train.make_trainer(config, make_task(task_name))
  state = trainer.init()
  state, _ = trainer.collect(state, 1000)
  state, _ = time_train(trainer, state, FLAGS.chunk)  # compiles
  returns = jax.block_until_ready(trainer.evaluate(state))  # compiles
  row = {'task': task_name, 'S': config.num_seeds, 'K': config.ensemble_size,
         'E': config.eval_episodes, 'full_length': FLAGS.full_length and task_name == 'hopper',
         'mean_return': float(returns.mean()), 'rounds': []}
  results['rows'].append(row)
  for _ in range(FLAGS.repeats):
    state, seconds = time_train(trainer, state, FLAGS.train_steps)
    rate = FLAGS.train_steps / seconds
    train_seconds = FLAGS.eval_every / rate
    waits = time_waits(trainer, state)
    state, overlap_seconds, steps, eval_seconds = time_overlapped(trainer, state)
    cost = overlap_seconds - steps / rate
    round_ = {'train_steps_per_second': rate, 'waits_seconds': waits,
              'overlapped_seconds': overlap_seconds, 'overlapped_steps': steps,
              'overlapped_evaluation_seconds': eval_seconds, 'overlapped_cost_seconds': cost,
              'share_waits': waits / (waits + train_seconds),
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
    jax.config.update('jax_compilation_cache_dir', FLAGS.compilation_cache_dir)
  results = {'argv': sys.argv, 'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
             'machine': platform.processor() or platform.machine(),
             'jax': jax.__version__, 'rows': []}
  for task_name in FLAGS.tasks:
    measure(task_name, results)


if __name__ == '__main__':
  app.run(main, argv=sys.argv)
