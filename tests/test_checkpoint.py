"""Checkpoints, exact resume, determinism and numerical health (piekd_mjx/checkpoint.py,
run.py, launch.py).

One small PIEKD setting (SETTING: two seeds of three members, phases, evaluations and
checkpoints every 500 steps) is shared by these tests. The in-process runs share one
trainer, so its programs are traced once; the subprocesses (the CLI, killed by SIGKILL
and stopped by SIGTERM) find them compiled in JAX's persistent cache.
"""

import base64
import dataclasses
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from piekd_mjx import checkpoint as checkpoint_lib
from piekd_mjx import config as config_lib
from piekd_mjx import policy as policy_lib
from piekd_mjx import programs as programs_lib
from piekd_mjx import progress as progress_lib
from piekd_mjx import records as records_lib
from piekd_mjx import run as run_lib
from piekd_mjx import train as train_lib

# These tests share the module's trainer and reference run: one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group('checkpoint')

SETTING = dict(env='inverted_pendulum', variant='piekd', num_seeds=2, hidden_sizes=(8, 8),
               total_steps=3000, eval_every=500, warmup_steps=200, batch_size=32,
               log_every=250, eval_episodes=2, replay_capacity=5000, checkpoint_every=500,
               keep_checkpoints=2, distill_data='sample', distill_sample_batches=2,
               distill_batch_size=32, distill_interval=1000)
NUM_RECORDS = 6  # evaluations at 500, 1000, ..., 3000


def make_config(**overrides) -> config_lib.Config:
  values = {**SETTING, **overrides}
  config = config_lib.apply_variant(config_lib.Config(**values), frozenset(values))
  config.validate()
  return config


CACHE_FLAG = f'--jax_cache_dir={jax.config.jax_compilation_cache_dir}'


def launch_command(run_dir, *extra, **overrides) -> list[str]:
  """The CLI command of SETTING (with ``overrides``) into ``run_dir``."""
  flags = [f'--{k}={",".join(map(str, v)) if isinstance(v, tuple) else v}'
           for k, v in {**SETTING, **overrides}.items()]
  return [sys.executable, '-m', 'piekd_mjx.launch', *flags, f'--out_dir={run_dir}',
          CACHE_FLAG, *extra]


def records(run_dir) -> list[dict]:
  with open(os.path.join(run_dir, 'metrics.jsonl'), encoding='utf-8') as f:
    return [json.loads(line) for line in f]


def comparable(run_dir) -> list[dict]:
  """The records of ``run_dir`` without the wall-clock fields."""
  return [{k: v for k, v in r.items() if k not in records_lib.WALL_CLOCK_FIELDS}
          for r in records(run_dir)]


def resume_in_process(run_dir, trainer, **overrides) -> str:
  """Resumes ``run_dir`` like ``--resume`` does; returns the warnings printed."""
  err = io.StringIO()
  run_lib.run(make_config(out_dir=str(run_dir), **overrides), str(run_dir),
              out=io.StringIO(), trainer=trainer, resume=True, err=err)
  return err.getvalue()


def wait_for_records(run_dir, count, process, timeout=600.0) -> None:
  """Waits until ``run_dir`` holds at least ``count`` records (the process running)."""
  path = os.path.join(run_dir, 'metrics.jsonl')
  deadline = time.time() + timeout
  while time.time() < deadline:
    assert process.poll() is None, f'the run ended early with {process.returncode}'
    if os.path.exists(path):
      with open(path, encoding='utf-8') as f:
        if sum(line.endswith('\n') for line in f) >= count:
          return
    time.sleep(0.02)
  process.kill()
  raise TimeoutError(f'{run_dir} did not reach {count} records')


@pytest.fixture(scope='session')
def trainer(task_cache):
  return programs_lib.make_trainer(make_config(), task_cache('inverted_pendulum'))


@pytest.fixture(scope='session')
def reference(trainer, tmp_path_factory):
  """The run directory of an uninterrupted run of SETTING."""
  run_dir = tmp_path_factory.mktemp('reference') / 'run'
  run_lib.run(make_config(out_dir=str(run_dir)), str(run_dir), out=io.StringIO(),
              trainer=trainer)
  assert len(records(run_dir)) == NUM_RECORDS
  return run_dir


# -- pieces -------------------------------------------------------------------------------


def test_arrays_json_round_trip_is_exact():
  arrays = {'a': np.array([[1 / 3, np.nan], [np.inf, -0.0]], np.float32),
            'b': np.array([3, -1], np.int32), 'c': np.float32(1e-30)}
  restored = checkpoint_lib.arrays_from_json(
      json.loads(json.dumps(checkpoint_lib.arrays_to_json(arrays))))
  for name, value in arrays.items():
    assert restored[name].dtype == np.asarray(value).dtype
    np.testing.assert_array_equal(restored[name], value)
  progress = progress_lib.Progress(step=750, trained_steps=250,
                              phase_metrics=({'distill/teacher': arrays['b']},), phase_step=(500,),
                              last_eval_step=500, wall_time=1.5)
  again = progress_lib.Progress.from_json(json.loads(json.dumps(progress.to_json())))
  assert (again.step, again.phase_step, again.last_eval_step) == (750, (500,), 500)
  np.testing.assert_array_equal(again.phase_metrics[0]['distill/teacher'], arrays['b'])


def test_members_finite_names_seed_and_member():
  members = {'w': jnp.ones((2, 3, 4, 5)), 'log_alpha': jnp.zeros((2, 3)),
             'count': jnp.zeros((2, 3), jnp.int32)}
  np.testing.assert_array_equal(train_lib.members_finite(members), np.ones((2, 3), bool))
  members['w'] = members['w'].at[1, 2, 3, 4].set(jnp.nan)
  members['log_alpha'] = members['log_alpha'].at[0, 1].set(jnp.inf)
  expected = np.ones((2, 3), bool)
  expected[1, 2] = expected[0, 1] = False
  np.testing.assert_array_equal(train_lib.members_finite(members), expected)


def initial_state(trainer):
  """The state ``run.run`` starts from (committed to the device, as in a run, so
  that these tests and the runs share compiled programs)."""
  return jax.device_put(trainer.init(), jax.devices()[0])


def test_chunking_does_not_change_the_state(trainer):
  """Exact resume relies on it: 2 × 40 steps and 1 × 80 steps give identical states."""
  state = trainer.collect(initial_state(trainer), 200)[0]
  copy = jax.tree.map(jnp.copy, state)
  two = trainer.train(trainer.train(state, 40)[0], 40)[0]
  one = trainer.train(copy, 80)[0]
  assert int(two.step) == int(one.step) == 280
  for a, b in zip(jax.tree.leaves(two), jax.tree.leaves(one)):
    np.testing.assert_array_equal(a, b)


def test_save_and_restore_are_exact_and_keep_the_newest(trainer, tmp_path):
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path), 2, jax.eval_shape(trainer.init))
  assert checkpointer.restore(print) is None
  state = trainer.collect(initial_state(trainer), 200)[0]
  assert any(x.size == 0 for x in jax.tree.leaves(state))  # saved as nothing, rebuilt
  for n in (10, 20, 30):
    state = trainer.train(state, n)[0]
    expected = jax.tree.map(np.asarray, state)
    checkpointer.save(state, {'step': int(state.step), 'note': [n, float('nan')]})
  assert checkpointer.steps() == [230, 260]
  restored, host, evaluation = checkpointer.restore(print)
  assert evaluation is None
  assert host['step'] == 260 and host['note'][0] == 30 and np.isnan(host['note'][1])
  assert jax.tree.structure(restored) == jax.tree.structure(expected)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(expected)):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)
  checkpointer.close()


def read_tensorboard(run_dir) -> dict[str, dict[int, float]]:
  """Every scalar of the run's TensorBoard event files, {tag: {step: value}}, read with
  the TFRecord framing (length, its CRC, the Event proto, its CRC) written out here."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  scalars = {}
  directory = os.path.join(run_dir, 'tensorboard')
  for name in sorted(os.listdir(directory)):
    with open(os.path.join(directory, name), 'rb') as f:
      data = f.read()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack('<Q', data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        scalars.setdefault(value.tag, {})[event.step] = value.simple_value
  return scalars


def test_tensorboard_holds_every_metric_per_seed_and_member(reference):
  scalars = read_tensorboard(reference)
  evals = {500 * i for i in range(1, NUM_RECORDS + 1)}
  last = records(reference)[-1]
  for seed in (0, 1):
    for member in (0, 1, 2):
      for name in ('sac/critic_loss', 'sac/actor_loss', 'sac/alpha_loss', 'sac/alpha',
                   'sac/entropy', 'sac/q_mean', 'eval/returns', 'ensemble/recent_returns'):
        assert set(scalars[f'{name}/seed_{seed}/member_{member}']) == evals, name
      assert scalars[f'eval/returns/seed_{seed}/member_{member}'][3000] == pytest.approx(
          last['eval/returns'][seed][member])
      assert set(scalars[f'distill/recent_returns/seed_{seed}/member_{member}']) == {1000,
                                                                                   2000}
    for name in ('eval/return_best', 'eval/return_worst', 'eval/best_member'):
      assert set(scalars[f'{name}/seed_{seed}']) == evals, name
    assert scalars[f'eval/return_best/seed_{seed}'][3000] == pytest.approx(
        last['eval/return_best'][seed])
    # The phases' metrics at their own steps (1000 and 2000; none after the last step).
    for name in ('distill/teacher', 'distill/skipped', 'distill/policy_kl_before',
                 'distill/policy_kl_after', 'distill/critic_mse_before',
                 'distill/critic_mse_after', 'distill/num_updates'):
      assert set(scalars[f'{name}/seed_{seed}']) == {1000, 2000}, name
    assert scalars[f'distill/teacher/seed_{seed}'][2000] == last['distill/teacher'][seed]
  for name in ('steps_per_second', 'eval/seconds', 'distill/num_phases',
               'eval/return_best/mean', 'sac/critic_loss/mean'):
    assert set(scalars[name]) == evals, name
  assert scalars['distill/num_phases'][3000] == 2


def test_an_evaluation_scores_the_members_before_the_phase_of_its_step(reference):
  by_step = {r['step']: r for r in records(reference)}
  assert by_step[500]['distill/num_phases'] == by_step[1000]['distill/num_phases'] == 0
  assert 'distill/last_phase_step' not in by_step[1000]
  assert by_step[1500]['distill/num_phases'] == 1
  assert by_step[1500]['distill/last_phase_step'] == 1000
  assert by_step[2000]['distill/num_phases'] == 1
  # No phase after the last step: nothing would train on it.
  assert by_step[3000]['distill/num_phases'] == 2
  assert by_step[3000]['distill/last_phase_step'] == 2000
  log = (reference / 'run.log').read_text()
  assert log.count('checkpoint ') == NUM_RECORDS and 'eval step 3,000' in log


def test_flags_the_variant_ignores_are_warned_and_logged(trainer, tmp_path):
  config = make_config(total_steps=200, eval_every=200, extra_updates='all')
  err = io.StringIO()
  run_lib.run(config, str(tmp_path), out=io.StringIO(), trainer=trainer, err=err)
  line = ("warning: --extra_updates='all' is ignored: --share=distill does no extra "
          'updates')
  assert err.getvalue().splitlines() == [line]
  assert line in (tmp_path / 'run.log').read_text()


# -- determinism and resume in process ------------------------------------------------------


def test_same_seed_same_metrics_different_seeds_differ(reference, trainer, tmp_path):
  run_lib.run(make_config(out_dir=str(tmp_path)), str(tmp_path), out=io.StringIO(),
              trainer=trainer)
  assert comparable(tmp_path) == comparable(reference)
  # The wall-clock fields are there, and they are all that was left out.
  assert set(records(reference)[0]) - set(comparable(reference)[0]) == set(
      records_lib.WALL_CLOCK_FIELDS)
  # The run's two seeds differ, and so does the run of another --seed.
  losses = np.asarray(comparable(reference)[-1]['sac/critic_loss'])  # [S, K]
  assert not np.array_equal(losses[0], losses[1])
  other = programs_lib.make_trainer(make_config(seed=1), trainer.task).init()
  assert not all(np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(trainer.init().members), jax.tree.leaves(other.members)))


def test_a_finished_run_extended_by_resume_is_exact(reference, trainer, tmp_path):
  """The run ends at 2000, a phase step: the phase is skipped there, and runs first when
  the run is extended to 3000."""
  run_lib.run(make_config(total_steps=2000, out_dir=str(tmp_path)), str(tmp_path),
              out=io.StringIO(), trainer=trainer)
  assert len(records(tmp_path)) == 4 and records(tmp_path)[-1]['distill/num_phases'] == 1
  assert resume_in_process(tmp_path, trainer) == ''
  assert comparable(tmp_path) == comparable(reference)


def test_a_checkpoint_of_an_earlier_version_restores_and_goes_on_exactly(reference, trainer,
                                                                          tmp_path):
  """tests/data/run-5836658 is SETTING's run as commit 5836658 wrote it (before the host
  side was split into modules), cut at its checkpoint of step 2500 and the records up to
  there: resumed by this version, it ends with the records of this version's own run."""
  run_dir = tmp_path / 'run'
  shutil.copytree(os.path.join(os.path.dirname(__file__), 'data', 'run-5836658'), run_dir)
  assert os.listdir(run_dir / 'checkpoints') == ['2500']
  assert resume_in_process(run_dir, trainer) == ''
  assert comparable(run_dir) == comparable(reference)


def test_training_does_not_wait_for_evaluation_and_the_records_are_the_same(reference,
                                                                           trainer, tmp_path):
  """With --noeval_overlap training waits for every evaluation; the records are those
  of the reference run, which overlapped them (the default)."""
  assert make_config().eval_overlap
  run_lib.run(make_config(out_dir=str(tmp_path), eval_overlap=False), str(tmp_path),
              out=io.StringIO(), trainer=trainer)
  assert comparable(tmp_path) == comparable(reference)
  # Each evaluation ran before its record was written: the wait recorded is bookkeeping
  # (a 1 ms bound failed once with the suite's other worker compiling on both cores).
  assert all(r['eval/wait_seconds'] == pytest.approx(0.0, abs=0.05)
             for r in records(tmp_path))


def test_an_evaluation_the_process_lost_runs_again_on_resume(reference, trainer, tmp_path):
  """The evaluation of step 1000 is still running when its checkpoint is taken; the
  process then dies (here: the evaluation fails and a chunk raises) before its record
  is written. The checkpoint holds the actors it scores, so the resumed run evaluates
  them again and ends with the reference's records."""

  def evaluate_members(actors, step, run=0):
    if int(step) == 1000:
      raise RuntimeError('lost with the process')
    return trainer.evaluate_members(actors, step, run)

  def chunk(state, num_steps, learn):
    if int(state.step) >= 1250:
      raise RuntimeError('killed')
    return trainer.chunk(state, num_steps, learn)

  with pytest.raises(RuntimeError, match='killed'):
    run_lib.run(make_config(out_dir=str(tmp_path)), str(tmp_path), out=io.StringIO(),
                trainer=trainer._replace(evaluate_members=evaluate_members, chunk=chunk))
  assert [r['step'] for r in records(tmp_path)] == [500]
  checkpoint = tmp_path / checkpoint_lib.CHECKPOINTS / '1000'
  assert (checkpoint / checkpoint_lib.EVALUATION_ITEM).is_dir()
  out = io.StringIO()
  run_lib.run(make_config(out_dir=str(tmp_path)), str(tmp_path), out=out, trainer=trainer,
              resume=True)
  assert 'the evaluation of step 1,000 had not written its record; it runs again' in (
      out.getvalue())
  assert comparable(tmp_path) == comparable(reference)


def _truncate_state_files(step_dir):
  for dirpath, _, filenames in os.walk(os.path.join(step_dir, 'state')):
    for name in filenames:
      path = os.path.join(dirpath, name)
      os.truncate(path, os.path.getsize(path) // 2)


def _garble_host(step_dir):
  with open(os.path.join(step_dir, 'host', 'metadata'), 'w', encoding='utf-8') as f:
    f.write('{"step": 30')


def _remove_state(step_dir):
  shutil.rmtree(os.path.join(step_dir, 'state'))


@pytest.mark.parametrize('corrupt', [_truncate_state_files, _garble_host, _remove_state])
def test_corrupt_latest_checkpoint_falls_back_to_the_previous(corrupt, reference, trainer,
                                                              tmp_path):
  run_dir = tmp_path / 'run'
  shutil.copytree(reference, run_dir)
  checkpoints = run_dir / checkpoint_lib.CHECKPOINTS
  assert sorted(os.listdir(checkpoints)) == ['2500', '3000']
  corrupt(str(checkpoints / '3000'))
  warnings = resume_in_process(run_dir, trainer).splitlines()
  assert len(warnings) == 1
  assert warnings[0].startswith(f'warning: checkpoint {checkpoints / "3000"} (step 3000) '
                                'does not restore (')
  assert warnings[0].endswith('); falling back to the previous one')
  assert comparable(run_dir) == comparable(reference)
  assert os.path.isdir(run_dir / checkpoint_lib.CORRUPT / '3000')
  assert sorted(os.listdir(checkpoints)) == ['2500', '3000']  # 3000 written again
  before = (run_dir / 'metrics.jsonl.before-resume-1').read_text()
  assert before == (reference / 'metrics.jsonl').read_text()


def test_partial_latest_checkpoint_is_removed(reference, trainer, tmp_path):
  """A save killed before it finished leaves orbax's temporary directory."""
  run_dir = tmp_path / 'run'
  shutil.copytree(reference, run_dir)
  checkpoints = run_dir / checkpoint_lib.CHECKPOINTS
  partial = checkpoints / '3000.orbax-checkpoint-tmp'
  os.rename(checkpoints / '3000', partial)
  warnings = resume_in_process(run_dir, trainer).splitlines()
  assert warnings == [f'warning: checkpoint {partial} is partial (its save never finished) '
                      'and was removed']
  assert comparable(run_dir) == comparable(reference)
  assert sorted(os.listdir(checkpoints)) == ['2500', '3000']


def test_no_checkpoint_restores(reference, trainer, tmp_path):
  run_dir = tmp_path / 'run'
  shutil.copytree(reference, run_dir)
  for step in ('2500', '3000'):
    _remove_state(str(run_dir / checkpoint_lib.CHECKPOINTS / step))
  metrics = (run_dir / 'metrics.jsonl').read_text()
  listing = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob('*'))
  with pytest.raises(checkpoint_lib.ResumeError, match='no checkpoint in .* restores'):
    resume_in_process(run_dir, trainer)
  assert (run_dir / 'metrics.jsonl').read_text() == metrics
  assert sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob('*')) == listing
  # The CLI says so in one line, exit code 2, after one warning per checkpoint.
  result = subprocess.run(launch_command(run_dir, '--resume'), cwd=tmp_path,
                          capture_output=True, text=True, timeout=600, check=False)
  lines = result.stderr.splitlines()
  assert result.returncode == 2, result.stderr
  assert 'Traceback' not in result.stderr
  assert lines[-1].startswith('error: no checkpoint in ')
  assert sum(line.startswith('warning: checkpoint') for line in lines) == 2
  assert (run_dir / 'metrics.jsonl').read_text() == metrics
  assert sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob('*')) == listing


def test_nonfinite_loss_stops_the_run_naming_seed_member_and_step(trainer, tmp_path):
  """A NaN in the critics of seed 1, member 2 at step 1250: the first update after it
  stops the run; nothing past the last good checkpoint is saved or recorded."""

  def chunk(state, num_steps, learn):
    if int(state.step) == 1250:
      critic = state.members.critic_params
      leaf = jax.tree.leaves(critic)[0]
      critic = jax.tree.map(lambda x: x.at[1, 2].set(jnp.nan) if x is leaf else x, critic)
      state = state.replace(members=state.members.replace(critic_params=critic))
    return trainer.chunk(state, num_steps, learn)

  with pytest.raises(run_lib.NonFiniteError) as error:
    run_lib.run(make_config(out_dir=str(tmp_path)), str(tmp_path), out=io.StringIO(),
                trainer=trainer._replace(chunk=chunk))
  checkpoints = tmp_path / checkpoint_lib.CHECKPOINTS
  assert str(error.value) == (f'non-finite losses at step 1251 in seed 1, member 2; the '
                              f'last good checkpoint is {checkpoints / "1000"}')
  assert sorted(os.listdir(checkpoints)) == ['1000', '500']
  assert [r['step'] for r in records(tmp_path)] == [500, 1000]


def test_exploding_learning_rates_exit_with_code_3(tmp_path):
  run_dir = tmp_path / 'run'
  result = subprocess.run(
      launch_command(run_dir, actor_lr=1e30, critic_lr=1e30, total_steps=400,
                     eval_every=400),
      cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 3, result.stderr
  assert 'Traceback' not in result.stderr
  match = re.fullmatch(r'error: non-finite (losses|parameters) at step (\d+) in seed [01], '
                       r'member [012]; the last good checkpoint is none \(no checkpoint yet\)',
                       result.stderr.splitlines()[-1])
  assert match, result.stderr
  assert 200 < int(match.group(2)) <= 450
  assert not os.listdir(run_dir / checkpoint_lib.CHECKPOINTS)
  assert not (run_dir / 'metrics.jsonl').read_text()


# -- the command line, stopped and resumed -------------------------------------------------


def _stopped(process, signum, run_dir) -> int:
  """Checks how ``process`` ended after ``signum``; returns the step it stopped at."""
  _, stderr = process.communicate(timeout=600)
  name = signal.Signals(signum).name
  assert process.returncode == 128 + signum, stderr
  assert 'Traceback' not in stderr
  line = stderr.splitlines()[-1]
  assert line.startswith(f'stopped by {name} at step '), stderr
  step = int(line.split(' at step ')[1].split(';')[0].replace(',', ''))
  checkpoint = os.path.join(run_dir, checkpoint_lib.CHECKPOINTS, str(step))
  assert line.endswith(f'; checkpoint {checkpoint}; continue with: python -m '
                       f'piekd_mjx.launch --resume --out_dir={run_dir}')
  assert os.path.isdir(checkpoint) and step % SETTING['log_every'] == 0
  assert all(r['step'] <= step for r in records(run_dir))
  return step


def test_killed_then_stopped_runs_resume_exactly(reference, trainer, tmp_path,
                                                 killable_cache):
  """One run through every way of stopping it. The CLI, replacing an older run with
  --overwrite, is killed (SIGKILL) after an evaluation; the CLI resumes it and SIGTERM
  stops it with a checkpoint; a resume in process is stopped by SIGINT at its first
  chunk boundary (the CLI reports a stop by either signal the same way, exit code
  128 + its number); the last resume finishes
  the run with exactly the records of the uninterrupted run."""
  run_dir = tmp_path / 'run'
  # The run replaces (--overwrite) an older run in its directory.
  shutil.copytree(reference, run_dir)
  os.remove(run_dir / 'metrics.jsonl')
  (run_dir / 'run.log').write_text('the older run\n')
  with open(tmp_path / 'log.txt', 'w', encoding='utf-8') as log:
    process = subprocess.Popen(launch_command(run_dir, '--overwrite', killable_cache),
                               cwd=tmp_path,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
      wait_for_records(run_dir, 1, process)
    finally:
      process.kill()
      process.wait(timeout=60)
  assert process.returncode == -signal.SIGKILL
  assert 'the older run' not in (run_dir / 'run.log').read_text()
  killed_at = len(records(run_dir))
  assert 1 <= killed_at < NUM_RECORDS
  # Resumed by the CLI (from the newest checkpoint the kill left), then SIGTERM.
  process = subprocess.Popen(launch_command(run_dir, '--resume'), cwd=tmp_path, text=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  wait_for_records(run_dir, killed_at + 1, process)
  process.send_signal(signal.SIGTERM)
  first = _stopped(process, signal.SIGTERM, run_dir)
  # Resumed in process; SIGINT arrives during its first chunk.
  sent = []

  def chunk(state, num_steps, learn):
    if not sent:
      signal.raise_signal(signal.SIGINT)
      sent.append(int(state.step))
    return trainer.chunk(state, num_steps, learn)

  with pytest.raises(run_lib.Stopped) as stopped:
    resume_in_process(run_dir, trainer._replace(chunk=chunk))
  second = stopped.value.step
  assert stopped.value.signum == signal.SIGINT
  assert sent == [first] and second == first + SETTING['log_every'] < SETTING['total_steps']
  assert stopped.value.checkpoint == os.path.join(run_dir, checkpoint_lib.CHECKPOINTS,
                                                  str(second))
  assert os.path.isdir(stopped.value.checkpoint)
  assert all(r['step'] <= second for r in records(run_dir))
  resume_in_process(run_dir, trainer)
  assert comparable(run_dir) == comparable(reference)


# -- one member's policy out of a checkpoint (piekd_mjx/policy.py) -------------------------


def test_a_members_policy_is_its_checkpointed_actor(reference, trainer, tmp_path):
  checkpointer = checkpoint_lib.Checkpointer(str(reference), 2,
                                             jax.eval_shape(trainer.init))
  state, _, _ = checkpointer.restore(lambda _: None)
  checkpointer.close()
  last = records(reference)[-1]
  for seed in (0, 1):
    policy = policy_lib.load(str(reference), seed=seed)
    best = int(np.argmax(last['eval/returns'][seed]))
    assert policy.origin == {'run': str(reference), 'seed': seed, 'member': best,
                             'step': 3000}
    expected = jax.tree.map(lambda x, s=seed, m=best: np.asarray(x[s, m]),
                            state.members.actor_params)
    jax.tree.map(np.testing.assert_array_equal, policy.params, expected)
  assert (policy.env, policy.observation_size, policy.action_size) == (
      'inverted_pendulum', 4, 1)
  obs = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
  mean, _ = policy.actor.apply(policy.params, obs)
  np.testing.assert_allclose(policy(obs), np.tanh(mean), rtol=1e-6)
  sampled = policy.sample(obs, jax.random.key(0))
  assert sampled.shape == (2, 1) and np.all(np.abs(sampled) < 1)
  # An older checkpoint and a member by index.
  other = policy_lib.load(str(reference), seed=1, member=2, step=2500)
  assert other.origin['step'] == 2500 and other.origin['member'] == 2
  # Saved alone, read back equal, and small.
  path = tmp_path / 'policy.msgpack'
  other.save(str(path))
  again = policy_lib.load(str(path))
  assert path.stat().st_size < 10_000
  assert dataclasses.replace(again, params=None) == dataclasses.replace(other, params=None)
  jax.tree.map(np.testing.assert_array_equal, again.params, other.params)
  np.testing.assert_array_equal(again(obs), other(obs))


@pytest.mark.parametrize('kwargs, words', [
    ({'seed': 2}, 'seed=2 is not a seed'),
    ({'member': 3}, 'member=3 is not a member'),
    ({'member': 'worst'}, "member='worst' is invalid"),
    ({'step': 1234}, 'step=1234 is not a checkpoint'),
])
def test_a_policy_that_is_not_there_is_one_line(reference, kwargs, words):
  with pytest.raises(policy_lib.PolicyError, match=re.escape(words)) as error:
    policy_lib.load(str(reference), **kwargs)
  assert '\n' not in str(error.value)


def test_a_directory_or_file_that_is_not_a_run_or_policy(tmp_path):
  (tmp_path / 'notes.txt').write_text('hello')
  for source, words in ((tmp_path, 'is not a run directory'),
                        (tmp_path / 'missing', 'is neither a run directory nor'),
                        (tmp_path / 'notes.txt', 'is neither a run directory nor')):
    with pytest.raises(policy_lib.PolicyError, match=words):
      policy_lib.load(str(source))


def test_play_runs_a_member_on_mujoco_c_and_on_mjx(reference, tmp_path):
  page = tmp_path / 'episode.html'
  result = subprocess.run(
      [sys.executable, '-m', 'piekd_mjx.play', f'--run={reference}', '--seed=1',
       '--episodes=3', f'--html={page}', CACHE_FLAG], capture_output=True, text=True, timeout=600,
      check=False)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0].startswith('inverted_pendulum: seed 1, member ')
  assert lines[1].startswith('MuJoCo C (Gymnasium): mean return ')
  assert lines[2].startswith('MJX (piekd_mjx): mean return ')
  assert 'over 3 episodes' in lines[1] and 'over 3 episodes' in lines[2]
  assert 'agree' in lines[3]
  # brax's viewer: the system's bodies and one pose of each per step (reset included);
  # each step earns 1 but the one where the pole falls (v5), so there are return + 1
  # poses (1,000 steps) or return + 2 (a fall).
  assert lines[4].startswith(f'html: {page} (an MJX episode from seed 0, return ')
  episode_return = float(re.search(r'return ([\d,.]+)\)', lines[4]).group(1).replace(',', ''))
  encoded = re.search(r'var system = "([A-Za-z0-9+/=]+)"', page.read_text()).group(1)
  system = json.loads(zlib.decompress(base64.b64decode(encoded)))
  assert sorted(system['geoms']) == ['cart', 'pole', 'world']
  poses = system['states']['x']
  assert len(poses) == episode_return + (1 if episode_return == 1000 else 2)
  assert np.array(poses[-1]['rot']).shape == (2, 4)  # cart and pole
  assert np.abs(np.array(poses[-1]['pos']) - np.array(poses[0]['pos'])).max() > 1e-3
  for argv, words in ((['--run=' + str(tmp_path / 'none')], 'is neither a run directory'),
                      ([f'--run={reference}', '--episodes=0'], '--episodes=0 is invalid'),
                      ([f'--run={reference}', '--member=9'], 'member=9 is not a member'),
                      ([f'--run={reference}', '--engines=bullet'], '--engines=bullet'),
                      ([f'--run={reference}', '--html=page.htm'], "--html='page.htm' is")):
    bad = subprocess.run([sys.executable, '-m', 'piekd_mjx.play', *argv],
                         capture_output=True, text=True, timeout=300, check=False)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1, bad.stderr
    assert words in bad.stderr, bad.stderr


def test_play_films_the_first_mujoco_c_episode(reference, tmp_path):
  # .ci/run installs the OpenGL backend (OSMesa); elsewhere the test needs it too.
  import imageio.v2 as imageio  # pylint: disable=g-import-not-at-top
  video, strip = tmp_path / 'episode.gif', tmp_path / 'strip.png'
  result = subprocess.run(
      [sys.executable, '-m', 'piekd_mjx.play', f'--run={reference}', '--engines=mujoco',
       CACHE_FLAG, '--episodes=1', f'--video={video}', f'--filmstrip={strip}',
       '--filmstrip_frames=2'],
      capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr
  count = int(re.search(r'video: .* \((\d+) frames', result.stdout).group(1))
  frames = [np.asarray(f)[..., :3] for f in imageio.mimread(video)]
  assert len(frames) == count >= 2  # the reset and every step of the episode
  assert frames[0].shape == (360, 480, 3)
  # Not blank: besides the background's colour, the body's (1% of the pixels or more).
  for frame in frames:
    colours, counts = np.unique(frame.reshape(-1, 3), axis=0, return_counts=True)
    assert counts.max() < 0.99 * counts.sum(), colours[np.argmax(counts)]
  # The pendulum moves in view: the frames are not all the same.
  assert max(np.abs(f.astype(int) - frames[0]).mean() for f in frames[1:]) > 0.05
  # The filmstrip: the first and the last frame side by side (the GIF's are quantised).
  first, last = np.split(imageio.imread(strip)[..., :3].astype(int), 2, axis=1)
  assert first.shape == (360, 480, 3)
  assert np.abs(first - frames[0]).mean() < 10 and np.abs(last - frames[-1]).mean() < 10
  bad = subprocess.run([sys.executable, '-m', 'piekd_mjx.play', f'--run={reference}',
                        '--video=out.avi'], capture_output=True, text=True, timeout=300,
                       check=False)
  assert bad.returncode == 2 and "--video='out.avi' is invalid" in bad.stderr
