"""How long a small trainer takes to build and compile, per task: the cost a test pays.

Builds tests/test_checkpoint.py's SETTING (PIEKD, 2 seeds of 3 members, 8x8 networks)
on each task named, in a child process of its own with no compilation cache, and times
its fresh state, its first warm-up chunk (the one chunk program compiles), two learning
chunks, an evaluation and a phase. The tasks alternate for ``--rounds`` rounds.

    python benchmarks/trainer_compile.py --tasks=stub,inverted_pendulum --rounds=2
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from absl import app
from absl import flags

flags.DEFINE_list('tasks', ['stub', 'inverted_pendulum'], 'Tasks to time, alternated.')
flags.DEFINE_integer('rounds', 2, 'Rounds of every task.')
flags.DEFINE_string('child', '', 'Internal: time this task here and print JSON.')
FLAGS = flags.FLAGS

SETTING = dict(variant='piekd', num_seeds=2, hidden_sizes=(8, 8), total_steps=3000,
               eval_every=500, warmup_steps=200, batch_size=32, log_every=250,
               eval_episodes=2, replay_capacity=5000, checkpoint_every=500,
               keep_checkpoints=2, distill_data='sample', distill_sample_batches=2,
               distill_batch_size=32, distill_interval=1000)


def time_task(env: str) -> dict[str, float]:
  """Seconds of each stage of ``env``'s trainer, compiling included."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_enable_compilation_cache', False)
  from piekd_mjx import config as config_lib  # pylint: disable=g-import-not-at-top
  from piekd_mjx import programs  # pylint: disable=g-import-not-at-top
  values = dict(SETTING, env=env)
  config = config_lib.apply_variant(config_lib.Config(**values), frozenset(values))
  times, mark = {}, time.perf_counter()

  def lap(name, tree):
    nonlocal mark
    jax.block_until_ready(tree)
    now = time.perf_counter()
    times[name], mark = now - mark, now

  trainer = programs.make_trainer(config)
  state = trainer.init()
  lap('init', state)
  state, metrics = trainer.collect(state, 250)
  lap('first_chunk', metrics)
  for _ in range(2):
    state, metrics = trainer.train(state, 250)
  lap('two_learning_chunks', metrics)
  lap('evaluation', trainer.evaluate(state))
  state, metrics = trainer.phase(state)
  lap('phase', metrics)
  times['total'] = sum(times.values())
  return times


def main(argv):
  del argv
  if FLAGS.child:
    print(json.dumps(time_task(FLAGS.child)))
    return
  print(f'{time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}', flush=True)
  for _ in range(FLAGS.rounds):
    for task in FLAGS.tasks:
      done = subprocess.run([sys.executable, __file__, f'--child={task}'], check=True,
                            capture_output=True, text=True)
      times = json.loads(done.stdout.strip().splitlines()[-1])
      print(f'{task:<18} ' + '  '.join(f'{k} {v:5.1f} s' for k, v in times.items()),
            flush=True)


if __name__ == '__main__':
  app.run(main)
