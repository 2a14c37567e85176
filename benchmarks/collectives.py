"""What the host loop of a run over several processes adds per chunk and evaluation
(piekd_mjx/processes.py): the all-gather of a chunk's [L, K] metrics, the agreement on
a stop signal, the broadcast of an evaluation's returns, and a barrier. Starts the
processes itself, on 127.0.0.1 (gloo over loopback on a CPU), and times each call
``--repeats`` times after one untimed call (which compiles it).

  python benchmarks/collectives.py --out=docs/benchmarks/collectives-cpu.json
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

import machine  # benchmarks/machine.py, beside this script

FLAGS = flags.FLAGS
flags.DEFINE_integer('num_processes', 2, 'Processes to start.')
flags.DEFINE_integer('lanes', 8, 'Lanes L of the gathered metrics (a multiple of the '
                     'processes).')
flags.DEFINE_integer('members', 3, 'Members K.')
flags.DEFINE_integer('episodes', 10, 'Evaluation episodes E of the broadcast returns.')
flags.DEFINE_integer('repeats', 50, 'Timed calls of each.')
flags.DEFINE_string('out', '', 'Write the results as JSON here.')
flags.DEFINE_integer('process_id', -1, 'Internal: this worker process (-1: start them).')
flags.DEFINE_integer('port', 0, 'Internal: the coordinator port.')


def _worker() -> dict:
  from piekd_mjx import processes  # pylint: disable=g-import-not-at-top
  processes.initialize({'coordinator_address': f'127.0.0.1:{FLAGS.port}',
                        'num_processes': FLAGS.num_processes,
                        'process_id': FLAGS.process_id})
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.sharding import Mesh, NamedSharding, PartitionSpec  # pylint: disable=g-import-not-at-top

  mesh = Mesh(np.array(jax.devices()), ('lanes',))
  lanes = NamedSharding(mesh, PartitionSpec('lanes'))
  shape = (FLAGS.lanes, FLAGS.members)
  # A chunk's metrics: six SAC means and two health flags, each [L, K], split by lane.
  metrics = {f'm{i}': jax.device_put(np.zeros(shape, np.float32), lanes) for i in range(8)}
  returns = [np.zeros((FLAGS.lanes, FLAGS.members, FLAGS.episodes), np.float32)]
  calls = {
      'fetch chunk metrics': lambda: processes.fetch(metrics),
      'agree on a stop signal': lambda: processes.largest(0),
      'broadcast returns': lambda: processes.broadcast(returns),
      'barrier': lambda: processes.barrier('benchmark'),
  }
  seconds = {}
  for name, call in calls.items():
    call()
    times = []
    for _ in range(FLAGS.repeats):
      start = time.perf_counter()
      call()
      times.append(time.perf_counter() - start)
    seconds[name] = {'median_ms': 1e3 * statistics.median(times),
                     'max_ms': 1e3 * max(times), 'all_ms': [1e3 * t for t in times]}
  return seconds


def main(argv):
  del argv
  if FLAGS.process_id >= 0:
    seconds = _worker()
    if FLAGS.process_id == 0 and FLAGS.out:
      with open(FLAGS.out, 'w', encoding='utf-8') as f:
        json.dump(seconds, f)
    return
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  scratch = tempfile.mkdtemp()
  partial = os.path.join(scratch, 'process0.json')  # what process 0 measured
  args = [sys.executable, os.path.abspath(__file__), f'--port={port}',
          f'--num_processes={FLAGS.num_processes}', f'--lanes={FLAGS.lanes}',
          f'--members={FLAGS.members}', f'--episodes={FLAGS.episodes}',
          f'--repeats={FLAGS.repeats}', f'--out={partial}']
  env = {**os.environ, 'JAX_PLATFORMS': os.environ.get('JAX_PLATFORMS', 'cpu')}
  workers = [subprocess.Popen(args + [f'--process_id={p}'], env=env)
             for p in range(FLAGS.num_processes)]
  if any(w.wait() for w in workers):
    sys.exit('a worker process failed')
  with open(partial, encoding='utf-8') as f:
    seconds = json.load(f)
  shutil.rmtree(scratch)
  results = {'num_processes': FLAGS.num_processes, 'lanes': FLAGS.lanes,
             'members': FLAGS.members, 'episodes': FLAGS.episodes,
             'repeats': FLAGS.repeats, 'seconds': seconds,
             'machine': machine.machine_info(['jax', 'jaxlib'])}
  for name, value in seconds.items():
    print(f'{name:>24}: median {value["median_ms"]:.2f} ms, max {value["max_ms"]:.2f} ms')
  if FLAGS.out:
    with open(FLAGS.out, 'w', encoding='utf-8') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  app.run(main)
