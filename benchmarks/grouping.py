"""A sweep trained as lanes of one program (``sweep --group``) against the same sweep
with every run alone (``--nogroup``), on whatever device JAX finds.

Each side is ``python -m piekd_mjx.sweep`` into a fresh root (the persistent
compilation cache shared, and filled by a first, untimed run of each side), timed
from its start to its end; the sides alternate (group, alone, group, ...) ``--rounds``
times. The JSON holds every process's wall time and whether each run's records
(wall-clock fields aside) are the same on both sides.

  python benchmarks/grouping.py --out=docs/benchmarks/grouping-cpu.json
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string('env', 'hopper', 'The task of the sweep.')
flags.DEFINE_list('arms', ['ensemble_sac', 'piekd', 'piekd_hardcopy', 'piekd_random_teacher',
                           'ensemble_sac_extra'], 'The arms (K = 3 variants: one group).')
flags.DEFINE_integer('num_seeds', 2, 'Seeds per arm.')
flags.DEFINE_integer('total_steps', 3000, 'Environment steps per run.')
flags.DEFINE_integer('rounds', 2, 'Alternations of the two sides.')
flags.DEFINE_string('jax_cache_dir', os.path.expanduser('~/.cache/piekd_mjx/jax'),
                    "JAX's persistent compilation cache, shared by every process.")
flags.DEFINE_string('out', '', 'Write the results as JSON here, as they come.')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WALL_CLOCK = ('wall_time', 'steps_per_second', 'eval/seconds', 'eval/wait_seconds')


def command(root: str, group: bool) -> list[str]:
  return [sys.executable, '-m', 'piekd_mjx.sweep', f'--root={root}', f'--env={FLAGS.env}',
          *[f'--arm={arm}' for arm in FLAGS.arms], '--profile=smoke',
          f'--override=num_seeds={FLAGS.num_seeds}',
          f'--override=total_steps={FLAGS.total_steps}', '--nocalibrate',
          f'--jax_cache_dir={FLAGS.jax_cache_dir}', '--group' if group else '--nogroup']


def records(root: str) -> dict[str, list[dict]]:
  runs = os.path.join(root, 'runs')
  out = {}
  for name in sorted(os.listdir(runs)):
    with open(os.path.join(runs, name, 'metrics.jsonl'), encoding='utf-8') as f:
      out[name] = [{k: v for k, v in json.loads(line).items() if k not in WALL_CLOCK}
                   for line in f]
  return out


def side(group: bool) -> tuple[float, dict]:
  root = tempfile.mkdtemp(prefix='grouping-')
  start = time.perf_counter()
  subprocess.run(command(root, group), cwd=ROOT, check=True, capture_output=True, text=True)
  seconds = time.perf_counter() - start
  result = records(root)
  shutil.rmtree(root)
  return seconds, result


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  data = {'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
          'machine': f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs',
          'device': str(jax.devices()[0]), 'jax': jax.__version__,
          'command': ' '.join(command('ROOT', True)), 'rounds': []}

  def write():
    if FLAGS.out:
      with open(FLAGS.out, 'w', encoding='utf-8') as f:
        json.dump(data, f, indent=2)

  reference = {}
  for group in (True, False):  # untimed: fills the compilation cache
    reference[group] = side(group)[1]
  data['same_records'] = reference[True] == reference[False]
  write()
  for _ in range(FLAGS.rounds):
    row = {}
    for group in (True, False):
      seconds, result = side(group)
      row['group_s' if group else 'alone_s'] = round(seconds, 1)
      row['same_records_' + ('group' if group else 'alone')] = result == reference[True]
    data['rounds'].append(row)
    print(json.dumps(row), flush=True)
    write()
  print(json.dumps(data, indent=2))


if __name__ == '__main__':
  app.run(main)
