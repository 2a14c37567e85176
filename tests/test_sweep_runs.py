"""A tiny sweep trained through the CLI (piekd_mjx/sweep.py): two sweeps started at once
on one root never train one run twice, and its report reads the runs (inverted_pendulum,
test_checkpoint.py's small setting, whose programs that module compiles in the same
pytest-xdist worker, so the subprocesses find them in JAX's cache); killed by SIGKILL,
run again, stopped by SIGTERM, run again, grouped or in parallel, a sweep ends with the
metrics of one never stopped (on the physics-free ``stub`` task, where the physics is
not the subject).
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from piekd_mjx import records as records_lib
from piekd_mjx import verdicts

pytestmark = pytest.mark.xdist_group('checkpoint')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTING = ['--env=inverted_pendulum', '--arm=ensemble_sac', '--arm=piekd',
           '--baseline=ensemble_sac', '--figure=tiny', '--curves=best,worst',
           '--num_seeds=2', '--hidden_sizes=8,8', '--total_steps=3000', '--eval_every=500',
           '--warmup_steps=200', '--batch_size=32', '--log_every=250', '--eval_episodes=2',
           '--replay_capacity=5000', '--checkpoint_every=500', '--keep_checkpoints=2',
           '--distill_data=sample', '--distill_sample_batches=2', '--distill_batch_size=32',
           '--distill_interval=1000', '--nocalibrate']
STUB = ['--env=stub', *SETTING[1:]]


def sweep_command(root, *extra, setting=STUB):
  import jax  # pylint: disable=g-import-not-at-top
  return [sys.executable, '-m', 'piekd_mjx.sweep', *setting, f'--root={root}',
          f'--jax_cache_dir={jax.config.jax_compilation_cache_dir}', *extra]


def run_dirs(root):
  return sorted(os.path.join(root, 'runs', n) for n in os.listdir(os.path.join(root, 'runs')))


def records(run_dir):
  path = os.path.join(run_dir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path, encoding='utf-8') as f:
    return [json.loads(line) for line in f if line.endswith('\n')]


def comparable(run_dir):
  return [{k: v for k, v in r.items() if k not in records_lib.WALL_CLOCK_FIELDS}
          for r in records(run_dir)]


def wait_until(predicate, process, timeout=600.0):
  deadline = time.time() + timeout
  while time.time() < deadline:
    assert process.poll() is None, f'the sweep ended early with {process.returncode}'
    if predicate():
      return
    time.sleep(0.05)
  process.kill()
  raise TimeoutError('the sweep did not get there')


def num_records(root, index):
  runs = os.path.join(root, 'runs')
  if not os.path.isdir(runs) or len(os.listdir(runs)) <= index:
    return 0
  return len(records(run_dirs(root)[index]))


@pytest.fixture(scope='module')
def two_at_once(tmp_path_factory):
  """A root trained by two sweeps started together, and what each printed."""
  root = tmp_path_factory.mktemp('together')
  processes = [subprocess.Popen(sweep_command(root, setting=SETTING), cwd=REPO, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
               for _ in range(2)]
  outputs = [p.communicate(timeout=900)[0] for p in processes]
  assert [p.returncode for p in processes] == [0, 0], outputs
  return root, outputs


@pytest.fixture(scope='module')
def stub_reference(tmp_path_factory):
  """A root of the same sweep on ``stub``, never stopped."""
  root = tmp_path_factory.mktemp('stub')
  result = subprocess.run(sweep_command(root), cwd=REPO, capture_output=True, text=True,
                          timeout=900, check=False)
  assert result.returncode == 0, result.stderr
  return root


def test_two_sweeps_on_one_root_train_each_run_once(two_at_once):
  root, outputs = two_at_once
  names = [os.path.basename(d) for d in run_dirs(root)]
  assert len(names) == 2
  for name in names:
    trained = [line for out in outputs for line in out.splitlines()
               if f'] {name}: new,' in line or f'] {name}: partial,' in line]
    assert len(trained) == 1, outputs
    assert len(records(os.path.join(root, 'runs', name))) == 6
    # One process wrote the run: its log has one start line.
    log = open(os.path.join(root, 'runs', name, 'run.log'), encoding='utf-8').read()
    assert log.count('inverted_pendulum · ') == 1


def test_a_killed_and_stopped_sweep_ends_with_the_same_metrics(stub_reference, tmp_path,
                                                              killable_cache):
  reference = stub_reference
  root = tmp_path / 'root'
  # SIGKILL in the first run, after its second evaluation.
  process = subprocess.Popen(sweep_command(root, killable_cache), cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    wait_until(lambda: num_records(root, 0) >= 2, process)
  finally:
    process.kill()
    process.wait(timeout=60)
  assert 2 <= num_records(root, 0) < 6
  # Run again; SIGTERM in the second run.
  process = subprocess.Popen(sweep_command(root), cwd=REPO, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  wait_until(lambda: num_records(root, 1) >= 1, process)
  process.send_signal(signal.SIGTERM)
  out, err = process.communicate(timeout=300)
  assert process.returncode == 128 + signal.SIGTERM, err
  assert ': partial, stub ' in out  # the run the kill cut
  assert err.splitlines()[-1].endswith('run the same sweep command again to go on')
  assert 'stopped by SIGTERM at step' in err
  # Run again: both runs finish, equal to the sweeps that were never stopped.
  result = subprocess.run(sweep_command(root), cwd=REPO, capture_output=True, text=True,
                          timeout=900, check=False)
  assert result.returncode == 0, result.stderr
  assert '2 unique runs: 0 new, 1 partial, 1 done, 0 busy' in result.stdout
  assert [os.path.basename(d) for d in run_dirs(root)] == [
      os.path.basename(d) for d in run_dirs(reference)]
  for ours, theirs in zip(run_dirs(root), run_dirs(reference)):
    assert comparable(ours) == comparable(theirs)
    # --keep=last: the newest checkpoint only.
    assert os.listdir(os.path.join(ours, 'checkpoints')) == ['3000']
  # A third time: nothing left to do.
  again = subprocess.run(sweep_command(root, '--dry_run'), cwd=REPO, capture_output=True,
                         text=True, timeout=300, check=False)
  assert '2 unique runs: 0 new, 0 partial, 2 done, 0 busy' in again.stdout


def test_the_report_of_a_sweep_reads_its_runs(two_at_once, tmp_path):
  root, _ = two_at_once
  result = subprocess.run([sys.executable, '-m', 'piekd_mjx.report', f'--root={root}',
                           f'--out={tmp_path}', '--resamples=500'], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr
  text = (tmp_path / 'REPORT.md').read_text()
  figure = json.loads((root / 'figures' / 'tiny.json').read_text())
  for cell in figure['cells']:
    last = records(os.path.join(root, 'runs', cell['run']))[-3:]  # the converged return
    best = np.mean([r['eval/return_best'] for r in last])
    row = next(l for l in text.splitlines()
               if l.startswith(f'| inverted_pendulum | {verdicts.paper_name(cell["arm"])} |'))
    assert f'| 2 | 3,000 | {best:,.1f} ' in row, (row, best)
  svg = (tmp_path / 'tiny-inverted_pendulum.svg').read_text()
  assert 'Ensemble-SAC' in svg and 'SAC-PIEKD' in svg and 'dashed: worst member' in svg
  # The agents: each arm's best member at its last checkpoint (3,000), over the seeds,
  # as its evaluation record names it, in a filmstrip of its MuJoCo C episode.
  import imageio.v2 as imageio  # pylint: disable=g-import-not-at-top
  lines = text.split('### The agents', 1)[1].splitlines()
  for cell in figure['cells']:
    returns = np.array(records(os.path.join(root, 'runs', cell['run']))[-1]['eval/returns'])
    seed, member = np.unravel_index(returns.argmax(), returns.shape)
    entry = next(i for i, l in enumerate(lines)
                 if l.startswith(f'- inverted_pendulum, {cell["arm"]}:'))
    assert f'seed {seed}, member {member}, step 3,000' in lines[entry], lines[entry]
    name = lines[entry + 1].split('](', 1)[1].rstrip(')')
    image = imageio.imread(tmp_path / name)
    assert image.shape[0] == 180 and image.shape[1] % 240 == 0 and image.shape[1] > 240
    assert image.std() > 5  # not blank (about 13 here): the pole and cart on the rail


def test_a_grouped_sweep_killed_and_run_again_ends_with_the_metrics_of_the_runs_alone(
    stub_reference, tmp_path, killable_cache):
  # --group trains the two runs (K = 3, the same program) as the 4 lanes of one; killed
  # by SIGKILL after a record and run again, each run's records are those of the runs
  # trained alone.
  reference = stub_reference
  root = tmp_path / 'root'
  process = subprocess.Popen(sweep_command(root, '--group', killable_cache), cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    wait_until(lambda: num_records(root, 1) >= 2, process)
  finally:
    process.kill()
    process.wait(timeout=60)
  assert num_records(root, 0) < 6
  result = subprocess.run(sweep_command(root, '--group'), cwd=REPO, capture_output=True,
                          text=True, timeout=900, check=False)
  assert result.returncode == 0, result.stderr
  assert '1 group(s) of runs trained as lanes of one program' in result.stdout
  assert ': partial, stub K=3 L=4 to step 3,000' in result.stdout
  for ours, theirs in zip(run_dirs(root), run_dirs(reference)):
    assert comparable(ours) == comparable(theirs)
    assert not os.path.exists(os.path.join(ours, 'checkpoints'))
  groups = os.listdir(root / 'groups')
  assert len(groups) == 1 and groups[0].startswith('stub-K3-L4-')
  assert os.listdir(root / 'groups' / groups[0] / 'checkpoints') == ['3000']
  again = subprocess.run(sweep_command(root, '--group', '--dry_run'), cwd=REPO,
                         capture_output=True, text=True, timeout=300, check=False)
  assert '2 unique runs: 0 new, 0 partial, 2 done, 0 busy' in again.stdout


def children_of(pid):
  """The live processes whose parent is ``pid`` (from /proc; zombies count as ended)."""
  found = []
  for name in os.listdir('/proc'):
    try:
      with open(f'/proc/{name}/stat', encoding='utf-8') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    except (OSError, IndexError):
      continue
    if int(fields[1]) == pid and fields[0] != 'Z':
      found.append(int(name))
  return found


def alive(pid):
  try:
    with open(f'/proc/{pid}/stat', encoding='utf-8') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except OSError:
    return False


@pytest.mark.parametrize('stop_with_sigterm', [
    False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_parallel_sweep_killed_and_run_again_ends_with_the_same_metrics(
    stub_reference, tmp_path, killable_cache, stop_with_sigterm):
  # --parallel_groups=2 trains the two runs at once, each in a child process. SIGKILL to
  # the parent takes its children with it; (under -m slow) SIGTERM reaches them through
  # it, and they stop at a checkpoint; run again, each run's records are those of the
  # sweep never stopped.
  reference = stub_reference
  root = tmp_path / 'root'
  process = subprocess.Popen(sweep_command(root, '--parallel_groups=2', killable_cache),
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    wait_until(lambda: num_records(root, 0) >= 1 and num_records(root, 1) >= 1, process)
    children = children_of(process.pid)
    assert len(children) == 2
  finally:
    process.kill()
    process.wait(timeout=60)
  deadline = time.time() + 30
  while any(alive(pid) for pid in children) and time.time() < deadline:
    time.sleep(0.1)
  assert not any(alive(pid) for pid in children)
  assert num_records(root, 0) < 6 or num_records(root, 1) < 6
  if stop_with_sigterm:
    _stop_parallel_with_sigterm(root)
  # A stub run can finish before the kill: one group is left, or two.
  left = sum(num_records(root, i) < 6 for i in (0, 1))
  result = subprocess.run(sweep_command(root, '--parallel_groups=2'), cwd=REPO,
                          capture_output=True, text=True, timeout=900, check=False)
  assert result.returncode == 0, result.stderr
  assert '2 groups at a time, each in a process of its own' in result.stdout
  for ours, theirs in zip(run_dirs(root), run_dirs(reference)):
    assert comparable(ours) == comparable(theirs)
    assert os.listdir(os.path.join(ours, 'checkpoints')) == ['3000']
  # Every line of a child names its group.
  started = [l for l in result.stdout.splitlines() if ': partial, stub ' in l]
  assert {l[:6] for l in started} == {f'[{i}/{left}] ' for i in range(1, left + 1)}, (
      result.stdout)


def _stop_parallel_with_sigterm(root):
  """A parallel sweep on ``root`` stopped by SIGTERM once its runs moved on."""
  process = subprocess.Popen(sweep_command(root, '--parallel_groups=2'), cwd=REPO, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  steps = [len(records(d)) for d in run_dirs(root)]
  wait_until(lambda: any(num_records(root, i) > steps[i] for i in (0, 1)), process)
  process.send_signal(signal.SIGTERM)
  out, err = process.communicate(timeout=300)
  assert process.returncode == 128 + signal.SIGTERM, err
  assert '2 groups at a time, each in a process of its own' in out
  assert err.splitlines()[-1].endswith('run the same sweep command again to go on'), err
