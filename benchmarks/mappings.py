"""The memory mappings a process holds for its compiled programs (piekd_mjx.executables):
those of each task's jitted reset and step, then of one trainer's programs (init, the
warm-up and learning chunks, a phase, an evaluation), and what is left after
``executables.release()``. Linux only (it reads /proc/self/maps). The kernel merges
adjacent mappings of equal permissions, so a program's count depends on what the
process mapped before it: each measurement runs in a process of its own.

  python benchmarks/mappings.py --out=docs/benchmarks/mappings-cpu.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

import machine  # benchmarks/machine.py, beside this script

FLAGS = flags.FLAGS
flags.DEFINE_list('envs', ['inverted_pendulum', 'hopper', 'humanoid'], 'Tasks.')
flags.DEFINE_string('trainer_env', 'hopper', "The task of the trainer's programs ('': none).")
flags.DEFINE_bool('alone', False, 'Measure here (one task, or the trainer) instead of one '
                  'process per measurement.')
flags.DEFINE_string('variant', 'piekd', "The trainer's variant.")
flags.DEFINE_string('out', '', 'Write the results as JSON here.')


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from piekd_mjx import config as config_lib  # pylint: disable=g-import-not-at-top
  from piekd_mjx import envs  # pylint: disable=g-import-not-at-top
  from piekd_mjx import executables  # pylint: disable=g-import-not-at-top
  from piekd_mjx import programs as programs_lib  # pylint: disable=g-import-not-at-top

  results = {'limit': executables.mapping_limit(), 'tasks': {}, 'trainer': {},
             'machine': machine.machine_info(['jax', 'jaxlib', 'mujoco-mjx'])}
  if not FLAGS.alone:
    jobs = [[f'--envs={name}', "--trainer_env="] for name in FLAGS.envs]
    if FLAGS.trainer_env:
      jobs.append(['--envs=', f'--trainer_env={FLAGS.trainer_env}'])
    for job in jobs:
      with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'one.json')
        subprocess.run([sys.executable, os.path.abspath(__file__), '--alone',
                        f'--variant={FLAGS.variant}', f'--out={out}', *job], check=True)
        with open(out, encoding='utf-8') as f:
          one = json.load(f)
      results['tasks'].update(one['tasks'])
      if one['trainer']:
        results['trainer'], results['trainer_config'] = one['trainer'], one['trainer_config']
    if FLAGS.out:
      with open(FLAGS.out, 'w', encoding='utf-8') as f:
        json.dump(results, f, indent=2)
    return

  def held(since: int) -> int:
    return executables.mappings() - since

  for name in FLAGS.envs:
    task = envs.make(name)
    start = executables.mappings()
    state = jax.block_until_ready(jax.jit(task.reset)(jax.random.PRNGKey(0)))
    reset = held(start)
    jax.block_until_ready(jax.jit(task.step)(state, jnp.zeros(task.action_size)))
    results['tasks'][name] = {'reset': reset, 'step': held(start) - reset}
    executables.release()
    results['tasks'][name]['left_after_release'] = held(start)
    print(name, results['tasks'][name], flush=True)

  if not FLAGS.trainer_env:
    _write(results)
    return
  config = config_lib.apply_variant(config_lib.Config(
      env=FLAGS.trainer_env, variant=FLAGS.variant, num_seeds=2, warmup_steps=100,
      replay_capacity=1000, eval_episodes=2, episode_length=100))
  start = executables.mappings()
  trainer = programs_lib.make_trainer(config)
  counts = results['trainer']
  state = jax.block_until_ready(trainer.init())
  counts['init'] = held(start)
  state, _ = trainer.collect(state, 100)
  state, metrics = jax.block_until_ready(trainer.train(state, 10))
  counts['with_chunk'] = held(start)
  if trainer.phase is not None:
    state, _ = trainer.phase(state)
    counts['with_phase'] = held(start)
  jax.block_until_ready(trainer.evaluate(state))
  counts['with_evaluation'] = held(start)
  executables.release()
  counts['left_after_release'] = held(start)
  results['trainer_config'] = {'env': config.env, 'variant': config.variant,
                               'ensemble_size': config.ensemble_size}
  print('trainer', counts, flush=True)
  _write(results)


def _write(results: dict) -> None:
  if FLAGS.out:
    with open(FLAGS.out, 'w', encoding='utf-8') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  app.run(main, argv=sys.argv)
