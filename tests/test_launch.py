"""Bad input to the command line (piekd_mjx/launch.py): one line ``error: ...`` on
stderr naming the value and what is valid, exit code 2, no traceback, and nothing
written. Each case runs the CLI as a subprocess; all of them stop before any JAX
compilation."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from piekd_mjx import config as config_lib

# Settings that would start a run at once if the input were good.
TINY = ['--hidden_sizes=8,8', '--total_steps=400', '--warmup_steps=200', '--batch_size=32',
        '--replay_capacity=1000', '--eval_episodes=1', '--jax_cache_dir=']


def launch(args, cwd):
  return subprocess.run([sys.executable, '-m', 'piekd_mjx.launch', *args], cwd=cwd,
                        capture_output=True, text=True, timeout=300, check=False)


def snapshot(root) -> dict[str, bytes]:
  """Every file under ``root`` with its contents, and every directory."""
  files = {}
  for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames:
      files[os.path.relpath(os.path.join(dirpath, name), root) + '/'] = b''
    for name in filenames:
      path = os.path.join(dirpath, name)
      with open(path, 'rb') as f:
        files[os.path.relpath(path, root)] = f.read()
  return files


def assert_usage_error(result, *fragments):
  lines = result.stderr.splitlines()
  assert result.returncode == 2, (result.returncode, result.stderr)
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith('error: '), lines
  assert 'Traceback' not in result.stderr + result.stdout
  for fragment in fragments:
    assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize('args, fragments', [
    (['--env=nope'], ["--env='nope' is invalid", 'inverted_pendulum']),
    (['--variant=ppo'], ["--variant='ppo' is invalid", 'piekd']),
    (['--num_seeds=0'], ['--num_seeds=0 is invalid: must be a positive integer']),
    (['--seed=-1'], ['--seed=-1 is invalid: must be a non-negative integer']),
    (['--total_steps=-5'], ['--total_steps=-5 is invalid']),
    (['--ensemble_size=0'], ['--ensemble_size=0 is invalid']),
    (['--eval_every=0'], ['--eval_every=0 is invalid']),
    (['--log_every=0'], ['--log_every=0 is invalid']),
    (['--checkpoint_every=0'], ['--checkpoint_every=0 is invalid']),
    (['--keep_checkpoints=0'], ['--keep_checkpoints=0 is invalid']),
    (['--replay_capacity=0'], ['--replay_capacity=0 is invalid']),
    (['--replay_capacity=3000000000'], ['--replay_capacity=3000000000 is invalid']),
    (['--batch_size=512'], ['--warmup_steps=200 is invalid: must be at least --batch_size '
                            '(512)']),
    (['--warmup_steps=500'], ['--warmup_steps=500 is invalid: must be at most '
                              '--total_steps (400)']),
    (['--actor_lr=inf'], ['--actor_lr=inf is invalid: must be a positive finite number']),
    (['--hidden_sizes=8,x'], ['--hidden_sizes=8,x is invalid']),
    (['--num_seeds=two'], ['num_seeds', 'two']),
    (['--no_such_flag=1'], ['no_such_flag']),
    (['--num_devices=-1'], ['--num_devices=-1 is invalid: must be a non-negative integer']),
    (['--num_devices=3'], ['--num_devices=3 is invalid: this process has 1 cpu device(s)']),
    (['--num_processes=2'], ['--coordinator_address, --process_id missing']),
    (['--coordinator_address=10.0.0.1', '--num_processes=2', '--process_id=0'],
     ["--coordinator_address='10.0.0.1' is invalid: must be host:port"]),
    (['--coordinator_address=127.0.0.1:1', '--num_processes=2', '--process_id=2'],
     ['--process_id=2 is invalid: must be 0 to 1']),
    (['--coordinator_address=127.0.0.1:1', '--num_processes=2', '--process_id=0'],
     ['--out_dir missing: a run over several processes needs --out_dir']),
])
def test_bad_value(args, fragments, tmp_path):
  result = launch([*TINY, *args], tmp_path)
  assert_usage_error(result, *fragments)
  assert not os.listdir(tmp_path)  # not even runs/


def test_existing_run_directory_needs_resume_or_overwrite(tmp_path):
  run_dir = tmp_path / 'run'
  run_dir.mkdir()
  (run_dir / 'config.json').write_text('{}')
  before = snapshot(tmp_path)
  result = launch([*TINY, f'--out_dir={run_dir}'], tmp_path)
  assert_usage_error(result, f'--out_dir={str(run_dir)!r} already holds a run', '--resume',
                     '--overwrite')
  assert snapshot(tmp_path) == before


def test_out_dir_under_a_file(tmp_path):
  (tmp_path / 'file').write_text('')
  before = snapshot(tmp_path)
  result = launch([*TINY, f'--out_dir={tmp_path}/file/run'], tmp_path)
  assert_usage_error(result, '--out_dir=', 'is a file, not a directory')
  assert snapshot(tmp_path) == before


def test_unwritable_directory(tmp_path):
  parent = tmp_path / 'read_only'
  parent.mkdir()
  parent.chmod(0o555)
  try:
    if os.access(parent, os.W_OK):  # root: permissions do not stop it; /proc does
      parent = '/proc'
    out_dir = os.path.join(parent, 'a', 'run')
    result = launch([*TINY, f'--out_dir={out_dir}'], tmp_path)
    assert_usage_error(result, f'--out_dir={out_dir!r} is not writable',
                       f'cannot create files in {parent}')
    assert not os.path.exists(os.path.join(parent, 'a'))
  finally:
    (tmp_path / 'read_only').chmod(0o755)


def test_replay_that_does_not_fit_in_memory(tmp_path):
  out_dir = tmp_path / 'run'
  result = launch([*TINY, '--replay_capacity=2000000000', '--num_seeds=1000',
                   f'--out_dir={out_dir}'], tmp_path)
  assert_usage_error(result, '--replay_capacity=2,000,000,000 × --num_seeds=1000 needs',
                     'GiB of replay buffers', 'GiB free')
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize('args, fragments', [
    (['--resume'], ['--resume needs --out_dir']),
    (['--resume', '--overwrite', '--out_dir=run'], ['--resume and --overwrite exclude']),
    (['--resume', '--out_dir=run'], ["--out_dir='run' holds no run to resume"]),
])
def test_resume_without_a_run(args, fragments, tmp_path):
  result = launch([*TINY, *args], tmp_path)
  assert_usage_error(result, *fragments)
  assert not os.listdir(tmp_path)


def _write_run(run_dir, **changes):
  """A run directory holding only the config.json of the TINY settings."""
  config = config_lib.apply_variant(config_lib.Config(
      hidden_sizes=(8, 8), total_steps=400, warmup_steps=200, batch_size=32,
      replay_capacity=1000, eval_episodes=1, out_dir=str(run_dir), **changes))
  run_dir.mkdir(exist_ok=True)
  (run_dir / 'config.json').write_text(json.dumps(dataclasses.asdict(config), indent=2))


@pytest.mark.parametrize('args, fragments', [
    (['--hidden_sizes=16,16'], ["--hidden_sizes=(16, 16) differs from the run's (8, 8)",
                                '--total_steps']),
    (['--seed=3'], ["--seed=3 differs from the run's 0"]),
    (['--variant=piekd'], ["--variant='piekd' differs from the run's 'vanilla_sac'"]),
    (['--actor_lr=0.001'], ["--actor_lr=0.001 differs from the run's 0.0003"]),
    (['--total_steps=0'], ['--total_steps=0 is invalid']),
])
def test_resume_that_would_change_training(args, fragments, tmp_path):
  run_dir = tmp_path / 'run'
  _write_run(run_dir)
  before = snapshot(tmp_path)
  result = launch(['--resume', f'--out_dir={run_dir}', *args], tmp_path)
  assert_usage_error(result, *fragments)
  assert snapshot(tmp_path) == before


def test_resume_with_an_unreadable_config(tmp_path):
  run_dir = tmp_path / 'run'
  run_dir.mkdir()
  (run_dir / 'config.json').write_text('{"hidden_sizes": [8, 8], "no_such_field": 1}')
  before = snapshot(tmp_path)
  result = launch(['--resume', f'--out_dir={run_dir}'], tmp_path)
  assert_usage_error(result, 'holds an unreadable config.json', 'no_such_field')
  assert snapshot(tmp_path) == before


def test_check_memory_counts_every_seed():
  from piekd_mjx import resources  # pylint: disable=g-import-not-at-top
  config = config_lib.Config(replay_capacity=1000, num_seeds=4)
  available = (resources.MEMORY_MARGIN_BYTES + 400_000, 'the test device')
  resources.check_memory(config, 100, available)
  with pytest.raises(resources.UsageError, match='--num_seeds=5 needs .* but the test device'):
    resources.check_memory(dataclasses.replace(config, num_seeds=5), 100, available)


# -- what --overwrite may delete ------------------------------------------------------------


def _write_finished_run(run_dir):
  """A directory with every kind of entry a run writes (contents made up)."""
  _write_run(run_dir)
  for name in ('metrics.jsonl', 'metrics.jsonl.before-resume-1', 'run.log'):
    (run_dir / name).write_text('{}\n')
  for name in ('checkpoints/400/state', 'checkpoints.corrupt/200', 'tensorboard'):
    (run_dir / name).mkdir(parents=True)
  (run_dir / 'tensorboard' / 'events.out.tfevents.1.host').write_bytes(b'\0')


@pytest.mark.parametrize('make, fragments', [
    (lambda d: (d / 'notes.txt').write_text('mine'),
     ['does not hold a run of piekd_mjx (no config.json)']),
    (lambda d: (d / 'config.json').write_text('{"lr": 1}'),
     ["its config.json is not a run's"]),
    (lambda d: (_write_finished_run(d), (d / 'notes.txt').write_text('mine')),
     ['it holds notes.txt, which no run writes']),
    (lambda d: (_write_finished_run(d), (d / 'checkpoints.old').mkdir(),
                (d / 'a.py').write_text(''), (d / 'b.py').write_text(''),
                (d / 'c.py').write_text('')),
     ['it holds a.py, b.py, c.py and 1 more']),
    (lambda d: (_write_finished_run(d), (d / 'run.log').unlink(), (d / 'run.log').mkdir()),
     ['it holds run.log, which no run writes']),
])
def test_overwrite_refuses_what_is_not_a_run(make, fragments, tmp_path):
  run_dir = tmp_path / 'run'
  run_dir.mkdir(exist_ok=True)
  make(run_dir)
  before = snapshot(tmp_path)
  result = launch([*TINY, f'--out_dir={run_dir}', '--overwrite'], tmp_path)
  assert_usage_error(result, f'--out_dir={str(run_dir)!r} --overwrite', *fragments)
  assert snapshot(tmp_path) == before


@pytest.mark.parametrize('out_dir, cwd, fragment', [
    ('.', 'run', 'the current directory or one of its parents'),
    ('..', 'run/sub', 'the current directory or one of its parents'),
    ('{tmp}', 'run', 'the current directory or one of its parents'),
    ('{tmp}/home', '.', 'the home directory or one of its parents'),
    ('/', '.', 'the file system root'),
])
def test_overwrite_never_deletes_the_working_directory_home_or_root(out_dir, cwd, fragment,
                                                                    tmp_path):
  # Each is a run directory, so only where it lies protects it.
  _write_finished_run(tmp_path / 'run')
  (tmp_path / 'run' / 'sub').mkdir()
  (tmp_path / 'home').mkdir()
  before = snapshot(tmp_path)
  result = subprocess.run(
      [sys.executable, '-m', 'piekd_mjx.launch', *TINY,
       f'--out_dir={out_dir.format(tmp=tmp_path)}', '--overwrite'],
      cwd=tmp_path / cwd, capture_output=True, text=True, timeout=300, check=False,
      env={**os.environ, 'HOME': str(tmp_path / 'home')})
  assert_usage_error(result, '--overwrite would delete', fragment)
  assert snapshot(tmp_path) == before


def test_overwrite_refuses_a_symbolic_link(tmp_path):
  _write_finished_run(tmp_path / 'run')
  (tmp_path / 'link').symlink_to(tmp_path / 'run')
  before = snapshot(tmp_path)
  result = launch([*TINY, f'--out_dir={tmp_path / "link"}', '--overwrite'], tmp_path)
  assert_usage_error(result, 'is a symbolic link')
  assert snapshot(tmp_path) == before


def test_a_run_directory_can_be_replaced(tmp_path):
  from piekd_mjx import rundir  # pylint: disable=g-import-not-at-top
  run_dir = tmp_path / 'run'
  _write_finished_run(run_dir)
  rundir.check_replaceable(str(run_dir))
  rundir.replace(str(run_dir))
  assert not run_dir.exists()
  rundir.check_replaceable(str(tmp_path / 'missing'))
  (tmp_path / 'empty').mkdir()
  rundir.replace(str(tmp_path / 'empty'))  # an empty directory is no loss
  assert sorted(os.listdir(tmp_path)) == []


def test_a_solver_the_task_does_not_offer(monkeypatch):
  # --solver=capped where every cap measured broke the task's parity (docs/TASKS.md):
  # one line naming the flag and what is valid (launch and sweep exit 2 with it).
  from piekd_mjx import envs  # pylint: disable=g-import-not-at-top
  from piekd_mjx import resources  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(envs.make_class('hopper'), 'capped_solver', None)
  with pytest.raises(ValueError) as error:
    resources.check_env('hopper', 'capped')
  assert str(error.value).startswith('--solver=capped is not offered for Hopper')
  assert str(error.value).endswith('valid: faithful, fast, mujoco_c')
  resources.check_env('hopper', 'fast')
  resources.check_env('hopper', 'mujoco_c')
  with pytest.raises(ValueError, match=r'--solver=warp is not offered for Hopper: .*valid: '
                     'faithful, fast, mujoco_c$'):
    resources.check_env('hopper', 'warp')
  with pytest.raises(ValueError, match=r"--solver=mujoco_c is not offered for Ant: it reads "
                     r".* besides qpos and qvel.*valid: faithful, fast, capped$"):
    resources.check_env('ant', 'mujoco_c')
  with pytest.raises(ValueError, match=r"--solver='mujoco_c' is invalid for the stub task"):
    resources.check_env('stub', 'mujoco_c')
  # MuJoCo C runs on the host: a CPU backend only, refused in one line elsewhere.
  resources.check_backend('mujoco_c')
  import jax  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  resources.check_backend('faithful')
  with pytest.raises(ValueError, match=r'^--solver=mujoco_c steps MuJoCo C on the host and '
                     r'runs on a CPU backend only \(this one is gpu\)'):
    resources.check_backend('mujoco_c')


def test_command_buffers_are_asked_of_xla_before_its_backend_starts():
  code = '''
import os
from piekd_mjx import jax_setup
os.environ['XLA_FLAGS'] = '--xla_gpu_autotune_level=4'
jax_setup.command_buffers()
jax_setup.command_buffers()  # once only
import jax
assert os.environ['XLA_FLAGS'].split() == ['--xla_gpu_autotune_level=4',
                                          jax_setup.COMMAND_BUFFER_FLAG]
assert int(jax.jit(lambda x: jax.lax.while_loop(lambda c: c < 5, lambda c: c + 1, x))(0)) == 5
try:
  jax_setup.command_buffers()
except RuntimeError as e:
  print('refused:', e)
'''
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120, check=True)
  assert 'refused: command_buffers() after a JAX backend started' in result.stdout


def test_help_lists_every_config_field_and_exits_0(tmp_path):
  from piekd_mjx.config import Config  # pylint: disable=g-import-not-at-top
  result = launch(['--help'], tmp_path)
  assert result.returncode == 0, result.stderr
  for field in dataclasses.fields(Config):
    assert f'--{field.name}' in result.stdout or f'--[no]{field.name}' in result.stdout, field
  assert not os.listdir(tmp_path)
