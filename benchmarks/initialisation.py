"""Learning with each weight initialiser, beside Stable-Baselines3's SAC (issue 22).

Vanilla-SAC on one task with the paper's protocol (a 10k-step warm-up of uniform random
actions, then one update per step; ``--eval_episodes`` deterministic episodes every
``--eval_every`` steps), once per ``--inits`` value of ``network_init`` with
``--num_seeds`` seeds in one run of ``python -m piekd_mjx.launch``, and SB3's ``SAC`` on
Gymnasium's ``*-v5`` (MuJoCo C) with the same settings for seeds 0 .. num_seeds - 1
(``benchmarks/whole_run.py --sb3_child``, one process per seed, ``--sb3_parallel`` at a
time with one torch thread each). Learning curves are what is measured, not time.

  python benchmarks/initialisation.py --env=hopper --out=docs/benchmarks/initialisation-hopper.json
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import platform
import subprocess
import sys
import time

from absl import app
from absl import flags
import numpy as np

FLAGS = flags.FLAGS
flags.DEFINE_string('env', 'hopper', 'Task (ours) and its Gymnasium *-v5 (SB3).')
flags.DEFINE_integer('total_steps', 50_000, 'Environment steps of a run.')
flags.DEFINE_integer('warmup_steps', 10_000, 'Steps of uniform random actions first.')
flags.DEFINE_integer('eval_every', 10_000, 'Steps between evaluations.')
flags.DEFINE_integer('eval_episodes', 20, 'Deterministic episodes per evaluation.')
flags.DEFINE_integer('num_seeds', 3, 'Seeds of every side.')
flags.DEFINE_list('inits', ['lecun_normal', 'glorot_uniform'], 'network_init values.')
flags.DEFINE_integer('sb3_parallel', 2, "SB3's seeds run at once.")
flags.DEFINE_string('runs', '', "Our runs' directories go here ('' : a temporary one).")
flags.DEFINE_string('out', '', 'Write the results as JSON here, as they come.')

_WHOLE_RUN = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'whole_run.py')


def run_ours(init: str, run_dir: str) -> dict:
  """Our Vanilla-SAC with ``network_init=init``: per evaluation, each seed's return."""
  command = [sys.executable, '-m', 'piekd_mjx.launch', f'--env={FLAGS.env}',
             '--variant=vanilla_sac', f'--num_seeds={FLAGS.num_seeds}',
             f'--total_steps={FLAGS.total_steps}', f'--warmup_steps={FLAGS.warmup_steps}',
             f'--eval_every={FLAGS.eval_every}', f'--eval_episodes={FLAGS.eval_episodes}',
             f'--network_init={init}', f'--out_dir={run_dir}']
  start = time.perf_counter()
  subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
  wall = time.perf_counter() - start
  with open(os.path.join(run_dir, 'metrics.jsonl'), encoding='utf-8') as f:
    records = [json.loads(line) for line in f]
  return {'side': f'ours, {init}', 'command': ' '.join(command[1:]), 'wall_seconds': wall,
          'eval_steps': [r['step'] for r in records],
          'returns': [r['eval/return_best'] for r in records]}  # [T][S]


def run_sb3_seed(seed: int) -> dict:
  command = [sys.executable, _WHOLE_RUN, '--sb3_child', f'--seed={seed}', *[
      f'--{name}={getattr(FLAGS, name)}' for name in (
          'env', 'total_steps', 'warmup_steps', 'eval_every', 'eval_episodes')]]
  out = subprocess.run(command, check=True, capture_output=True, text=True,
                       env={**os.environ, 'OMP_NUM_THREADS': '1'}).stdout
  return json.loads(out.strip().splitlines()[-1])


def run_sb3() -> dict:
  """SB3's SAC for every seed: per evaluation, each seed's return."""
  start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(FLAGS.sb3_parallel) as pool:
    seeds = list(pool.map(run_sb3_seed, range(FLAGS.num_seeds)))
  wall = time.perf_counter() - start
  return {'side': 'Stable-Baselines3', 'gym_id': seeds[0]['gym_id'], 'wall_seconds': wall,
          'eval_steps': seeds[0]['eval_steps'],
          'returns': np.asarray([s['eval_returns'] for s in seeds]).T.tolist()}


def table(rows: list[dict]) -> str:
  """Markdown: per evaluation step, each side's mean over seeds and every seed."""
  lines = ['| step | ' + ' | '.join(r['side'] for r in rows) + ' |',
           '| --: |' + ' --: |' * len(rows)]
  for i, step in enumerate(rows[0]['eval_steps']):
    cells = []
    for r in rows:
      seeds = r['returns'][i]
      cells.append(f'{np.mean(seeds):,.0f} ({", ".join(f"{x:,.0f}" for x in seeds)})')
    lines.append(f'| {step:,} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  import stable_baselines3  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True,
                          text=True, cwd=os.path.dirname(_WHOLE_RUN)).stdout.strip()
  results = {'argv': sys.argv, 'commit': commit,
             'date': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
             'machine': platform.processor() or platform.machine(),
             'cpus': os.cpu_count(), 'jax': jax.__version__, 'torch': torch.__version__,
             'stable_baselines3': stable_baselines3.__version__, 'rows': []}
  runs = FLAGS.runs or os.path.join('/tmp', f'initialisation-{os.getpid()}')
  sides = [lambda i=init: run_ours(i, os.path.join(runs, i)) for init in FLAGS.inits]
  for side in sides + [run_sb3]:
    row = side()
    results['rows'].append(row)
    print(json.dumps(row), flush=True)
    if FLAGS.out:
      with open(FLAGS.out, 'w', encoding='utf-8') as f:
        json.dump(results, f, indent=2)
  print(table(results['rows']))


if __name__ == '__main__':
  app.run(main)
