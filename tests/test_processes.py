"""Runs over several processes (piekd_mjx/processes.py): a run of two processes on
127.0.0.1 (``launch``) stops in both when one of them is signalled, refuses a resume
on one process, and is resumed by a sweep of two processes to the records of one
process; and the flags of ``jax.distributed.initialize`` with the launchers'
environments. The runs are of the physics-free ``stub`` task (envs/stub.py)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

from absl import flags
import jax
import numpy as np
import pytest

from piekd_mjx import config as config_lib
from piekd_mjx import config_flags
from piekd_mjx import grid
from piekd_mjx import processes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 4 seeds, 2 lanes a process, phases and checkpoints every 250 steps. The lane program
# is test_sharding's (4 lanes of its SETTING), so the one-process run and that test's
# one-device group share their compiled programs (the two run one after the other).
FLAGS = ['--env=stub', '--variant=piekd', '--num_seeds=4', '--ensemble_size=3',
         '--hidden_sizes=8,8', '--total_steps=500', '--eval_every=250', '--warmup_steps=200',
         '--batch_size=16', '--log_every=50', '--eval_episodes=2', '--replay_capacity=1000',
         '--checkpoint_every=250', '--distill_data=sample', '--distill_sample_batches=2',
         '--distill_batch_size=16', '--distill_interval=250']
WALL_CLOCK = ('wall_time', 'steps_per_second', 'eval/seconds', 'eval/wait_seconds')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _launch(logs, run_dir, *extra, process=None, port=None, sweep_root=None):
  """The CLI on ``run_dir`` (as process ``process`` of 2), or the sweep of ``FLAGS`` on
  ``sweep_root``, its output to files in ``logs`` (a pipe left unread could block a
  process that the other one waits for)."""
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': ''}
  where = ([f'--out_dir={run_dir}'] if sweep_root is None else
           [f'--root={sweep_root}', '--nocalibrate'])
  args = [sys.executable, '-m', 'piekd_mjx.' + ('launch' if sweep_root is None else 'sweep'),
          *FLAGS, *where, f'--jax_cache_dir={jax.config.jax_compilation_cache_dir}', *extra]
  if process is not None:
    args += [f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
             f'--process_id={process}']
  os.makedirs(logs, exist_ok=True)
  name = os.path.join(logs, '.'.join([
      'launch' if sweep_root is None else 'sweep', os.path.basename(run_dir),
      'alone' if process is None else str(process), str(len(os.listdir(logs)))]))
  with open(f'{name}.out', 'w') as out, open(f'{name}.err', 'w') as err:
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=err, text=True)
  proc.files = (f'{name}.out', f'{name}.err')
  return proc


def _finish(procs, timeout=900):
  """Each process's (returncode, stdout, stderr) once all have ended (killed past
  ``timeout`` seconds)."""
  deadline = time.time() + timeout
  try:
    for proc in procs:
      proc.wait(timeout=max(1, deadline - time.time()))
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  results = []
  for proc in procs:
    with open(proc.files[0]) as out, open(proc.files[1]) as err:
      results.append((proc.returncode, out.read(), err.read()))
  return results


def _two(logs, run_dir, *extra, signal_process_1=False, sweep_root=None):
  """Both processes of a run to their end; with ``signal_process_1``, SIGTERM to
  process 1 once process 0 has trained a chunk. Returns [(returncode, out, err)]."""
  port = _free_port()
  procs = [_launch(logs, run_dir, *extra, process=p, port=port, sweep_root=sweep_root)
           for p in (0, 1)]
  if signal_process_1:
    deadline = time.time() + 900
    while time.time() < deadline and procs[0].poll() is None:
      with open(procs[0].files[0]) as f:
        if any(line.startswith('step ') for line in f):
          break
      time.sleep(0.02)
    procs[1].send_signal(signal.SIGTERM)
  return _finish(procs)


def _records(run_dir):
  with open(os.path.join(run_dir, 'metrics.jsonl'), encoding='utf-8') as f:
    return [{k: v for k, v in json.loads(line).items() if k not in WALL_CLOCK} for line in f]


def _assert_same(got, want):
  # To float32 rounding, as test_sharding: jax 0.10 rounds a few SAC metrics of the
  # per-device programs differently (bit-equal on jax 0.9).
  assert [r['step'] for r in got] == [r['step'] for r in want]
  for p, q in zip(got, want):
    assert p.keys() == q.keys()
    for k in p:
      np.testing.assert_allclose(np.asarray(p[k], float), np.asarray(q[k], float),
                                 rtol=1e-5, atol=1e-6, err_msg=f"{p['step']} {k}")


@pytest.mark.xdist_group('devices')
@pytest.mark.skipif(jax.__version__.startswith('0.11.'),
                    reason="XLA's CPU compiler segfaults compiling the sharded chunk "
                    'program in jax 0.11.2 (see test_sharding)')
def test_two_processes_equal_one_and_resume_after_a_signal(tmp_path):
  logs, one = tmp_path / 'logs', tmp_path / 'one'
  [(code, _, err)] = _finish([_launch(logs, one)])
  assert code == 0, err[-3000:]
  want = _records(one)
  assert [r['step'] for r in want] == [250, 500] and 'distill/policy_kl_after' in want[1]

  # The run where a sweep of these flags on ``root`` keeps it, so that it resumes it.
  flag_values = flags.FlagValues()
  config_flags.define_flags(flag_values)
  flag_values(['launch', *FLAGS])
  config = config_lib.apply_variant(*config_flags.config_from_flags(flag_values))
  root = tmp_path / 'sweep'
  two = root / 'runs' / grid.run_name(config)
  (code0, out0, err0), (code1, out1, err1) = _two(logs, two, signal_process_1=True)
  # Process 1 was signalled; both stopped at one chunk boundary, after a checkpoint.
  assert (code0, code1) == (143, 143), (err0[-3000:], err1[-3000:])
  assert 'stopped by SIGTERM' in err0 and '--resume' in err0, err0[-2000:]
  assert 'of 2 processes' in out0 and 'step ' not in out1, (out0[-1000:], out1[-1000:])
  stopped_at = int(err0.split('stopped by SIGTERM at step ')[1].split(';')[0].replace(',', ''))
  assert 0 < stopped_at < 500
  assert os.listdir(two / 'checkpoints') == [str(stopped_at)]

  # A resume on another number of processes is refused in one line, nothing changed.
  before = sorted(os.listdir(two))
  [(code, _, err)] = _finish([_launch(logs, two, '--resume')])
  assert code == 2, err[-3000:]
  lines = [line for line in err.splitlines() if line.startswith('error:')]
  assert len(lines) == 1 and '--num_processes=2' in lines[0], err[-2000:]
  assert sorted(os.listdir(two)) == before

  # The sweep of the same flags over two processes finds the run cut and resumes it.
  results = _two(logs, two, sweep_root=root)
  assert [code for code, _, _ in results] == [0, 0], [e[-3000:] for _, _, e in results]
  assert 'partial' in results[0][1], results[0][1][-2000:]
  assert 'partial' not in results[1][1] and 'step ' not in results[1][1], results[1][1][-2000:]
  _assert_same(_records(two), want)


def test_the_flags_give_initialize_its_arguments():
  assert processes.arguments(None, None, None, environ={}) is None
  assert processes.arguments(None, 1, None, environ={}) is None
  assert processes.arguments('10.0.0.1:1234', 2, 1, environ={}) == {
      'coordinator_address': '10.0.0.1:1234', 'num_processes': 2, 'process_id': 1}
  # Under a launcher, the flags left out come from its environment (JAX detects it).
  slurm = {'SLURM_JOB_ID': '7', 'SLURM_STEP_NODELIST': 'node[1-2]', 'SLURM_NTASKS': '2',
           'SLURM_PROCID': '1', 'SLURM_LOCALID': '0'}
  assert processes.launcher(slurm) == ('SLURM', 2)
  assert processes.arguments(None, None, None, environ=slurm) == {}
  mpi = {'OMPI_MCA_orte_hnp_uri': '1.2.3.4', 'OMPI_COMM_WORLD_SIZE': '4',
         'OMPI_COMM_WORLD_RANK': '3'}
  assert processes.launcher(mpi) == ('Open MPI', 4)
  # A launcher of one task is one process.
  assert processes.launcher({**slurm, 'SLURM_NTASKS': '1'}) is None
  assert processes.arguments(None, None, None, environ={**slurm, 'SLURM_NTASKS': '1'}) is None


@pytest.mark.parametrize('given, message', [
    (('localhost', 2, 0), r"--coordinator_address='localhost' is invalid: must be host:port"),
    (('10.0.0.1:1234', 0, 0), r'--num_processes=0 is invalid: must be at least 1'),
    (('10.0.0.1:1234', 2, 2), r'--process_id=2 is invalid: must be 0 to 1'),
    ((None, None, -1), r'--process_id=-1 is invalid'),
    ((None, 2, 1), r'--coordinator_address missing'),
    (('10.0.0.1:1234', None, None), r'--num_processes, --process_id missing'),
])
def test_bad_flags_are_refused_naming_them(given, message):
  with pytest.raises(ValueError, match=message):
    processes.arguments(*given, environ={})
