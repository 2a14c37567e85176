"""The cost of an evaluation at the paper's protocol against the training it follows.

For each task: one evaluation (``eval_episodes`` deterministic episodes of every member
of every seed, at most 1,000 steps) with the episodes all in one batch and one at a
time (``--eval_batch``), alternating, and a learning chunk of ``--train_steps`` steps;
the share of evaluation in a run's wall time is evaluation / (evaluation + the
training of ``eval_every`` steps). The actors are the freshly initialised ones: on
halfcheetah every episode runs 1,000 steps, as a trained policy's do; on hopper an
untrained policy falls within tens of steps, a trained one runs 1,000, so hopper's row
is a lower bound.

  python benchmarks/evaluation.py --tasks=halfcheetah,hopper --out=docs/benchmarks/evaluation.json
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_list('tasks', ['halfcheetah', 'hopper'], 'Tasks.')
flags.DEFINE_integer('num_seeds', 5, 'S.')
flags.DEFINE_integer('ensemble_size', 3, 'K.')
flags.DEFINE_integer('eval_episodes', 20, 'E.')
flags.DEFINE_integer('eval_every', 10_000, 'Training steps an evaluation follows.')
flags.DEFINE_integer('train_steps', 500, 'Steps of the timed learning chunk.')
flags.DEFINE_integer('repeats', 2, 'Alternations of the two evaluation modes.')
flags.DEFINE_string('compilation_cache_dir', '', "JAX's persistent cache ('' for none).")
flags.DEFINE_string('out', '', 'Write the results as JSON here, as they come.')


def measure(task: str, results: dict) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  from piekd_mjx import config as config_lib  # pylint: disable=g-import-not-at-top
  from piekd_mjx import train  # pylint: disable=g-import-not-at-top
  base = config_lib.Config(
      env=task, variant='ensemble_sac', num_seeds=FLAGS.num_seeds,
      ensemble_size=FLAGS.ensemble_size, eval_episodes=FLAGS.eval_episodes,
      replay_capacity=100_000, warmup_steps=1000)
  modes = {'all at once': base.num_seeds * base.ensemble_size * base.eval_episodes,
           'one at a time': 1}
  trainers = {name: train.make_trainer(config_lib.apply_variant(
      dataclasses.replace(base, eval_batch=batch), {'ensemble_size'}))
              for name, batch in modes.items()}
  trainer = trainers['one at a time']
  state = trainer.init()
  state, _ = trainer.collect(state, 1000)
  state, metrics = trainer.train(state, 10)  # compiles
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  state, metrics = trainer.train(state, FLAGS.train_steps)
  jax.block_until_ready(metrics)
  train_seconds = (time.perf_counter() - start) / FLAGS.train_steps * FLAGS.eval_every
  row = {'task': task, 'S': base.num_seeds, 'K': base.ensemble_size,
         'E': base.eval_episodes, 'train_seconds_per_eval_every': train_seconds,
         'evaluation_seconds': {name: [] for name in modes}}
  for name, t in trainers.items():  # compile, and the episodes' lengths
    returns = jax.block_until_ready(t.evaluate(state))
  for _ in range(FLAGS.repeats):
    for name, t in trainers.items():
      start = time.perf_counter()
      jax.block_until_ready(t.evaluate(state))
      row['evaluation_seconds'][name].append(time.perf_counter() - start)
  row['share'] = {name: [e / (e + train_seconds) for e in times]
                  for name, times in row['evaluation_seconds'].items()}
  row['mean_return'] = float(returns.mean())
  results['rows'].append(row)
  print(json.dumps(row), flush=True)


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir', FLAGS.compilation_cache_dir)
  results = {'argv': sys.argv, 'rows': []}
  for task in FLAGS.tasks:
    measure(task, results)
    if FLAGS.out:
      with open(FLAGS.out, 'w', encoding='utf-8') as f:
        json.dump(results, f, indent=2)


if __name__ == '__main__':
  app.run(main, argv=sys.argv)
