"""Sweeps (piekd_mjx/grid.py, sweep.py): the grid and run identity, bad input, the plan,
the state of a run directory and the lock. The sweep that trains is in
test_sweep_runs.py, the report in test_report.py."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from piekd_mjx import config as config_lib
from piekd_mjx import costs
from piekd_mjx import dispatch
from piekd_mjx import figures as figures_lib
from piekd_mjx import grid
from piekd_mjx import plan
from piekd_mjx import resources
from piekd_mjx import rootdir
from piekd_mjx import rundir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def figure(arms, **values):
  values = {'env': ('hopper',), **{k: v if isinstance(v, tuple) else (v,)
                                   for k, v in values.items()}}
  return grid.Figure(name='f', title='f', arms=tuple(grid.parse_arm(a) for a in arms),
                     values=grid.values_from(values), explicit=frozenset(values) - {'env'})


def sweep_cli(*args, cwd=REPO):
  return subprocess.run([sys.executable, '-m', 'piekd_mjx.sweep', *args], cwd=cwd,
                        capture_output=True, text=True, timeout=300, check=False)


# -- the grid ----------------------------------------------------------------------------


def test_runs_are_the_product_and_arms_set_their_own_fields():
  runs = figure(['ensemble_sac', 'piekd,distill_interval=1000'], env=('hopper', 'ant'),
                num_seeds=(2, 3)).runs()
  assert len(runs) == 8
  cells = {(arm.label, c.env, c.num_seeds, c.ensemble_size, c.distill_interval, c.share)
           for arm, c in runs}
  assert ('piekd (distill_interval=1000)', 'ant', 3, 3, 1000, 'distill') in cells
  assert ('ensemble_sac', 'hopper', 2, 3, 5000, 'none') in cells


def test_a_run_is_named_by_what_can_change_its_training():
  base = config_lib.apply_variant(config_lib.Config(variant='ensemble_sac', env='hopper'))
  name = grid.run_name(base)
  # Fields the variant ignores, and those a resume may change, do not make another run.
  for change in (dict(distill_interval=1000), dict(teacher='random'),
                 dict(total_steps=7), dict(eval_every=5), dict(out_dir='x')):
    assert grid.run_name(dataclasses.replace(base, **change)) == name, change
  for change in (dict(seed=1), dict(num_seeds=2), dict(actor_lr=1e-3), dict(env='ant')):
    assert grid.run_name(dataclasses.replace(base, **change)) != name, change
  piekd = config_lib.apply_variant(config_lib.Config(variant='piekd', env='hopper'))
  assert grid.run_name(dataclasses.replace(piekd, distill_interval=1000)) != grid.run_name(
      piekd)
  assert name.startswith('hopper-ensemble_sac-')


def test_figures_share_runs_and_the_longest_budget_wins():
  # Ensemble-SAC at three intervals is one run; a second figure asks for it longer.
  first = figure(['ensemble_sac', 'piekd'], distill_interval=(1000, 5000, 100_000),
                 total_steps=50_000)
  second = dataclasses.replace(figure(['ensemble_sac'], total_steps=80_000), name='g')
  runs = grid.unique_runs([first, second])
  assert len(runs) == 4
  assert [c.total_steps for c in runs if c.variant == 'ensemble_sac'] == [80_000]
  clash = dataclasses.replace(figure(['ensemble_sac'], eval_every=500), name='h')
  with pytest.raises(ValueError, match='--eval_every: figure .h. asks 500'):
    grid.unique_runs([first, clash])


@pytest.mark.parametrize('spec, fragment', [
    ('ppo', "'ppo' is not one of"),
    ('piekd,distill_interval', 'must be FIELD=VALUE'),
    ('piekd,env=ant', 'other than variant and env'),
    ('piekd,no_such=1', "'no_such' is not a Config field"),
    ('piekd,ensemble_size=two', "--ensemble_size='two' is invalid: must be an integer"),
])
def test_bad_arms(spec, fragment):
  with pytest.raises(ValueError, match=fragment):
    grid.parse_arm(spec)


def test_an_arm_with_a_tuple_and_its_label():
  arm = grid.parse_arm('piekd,hidden_sizes=64/64,distill_lr=0.01')
  assert arm.settings == (('hidden_sizes', (64, 64)), ('distill_lr', 0.01))
  assert arm.label == 'piekd (hidden_sizes=(64, 64), distill_lr=0.01)'
  assert grid.parse_arm(arm.spec) == arm


# -- the command line --------------------------------------------------------------------


@pytest.mark.parametrize('args, fragments', [
    ([], ['--root is required']),
    (['--root={tmp}', '--env=nope'], ["--env='nope' is invalid"]),
    (['--root={tmp}', '--num_seeds=0'], ['--num_seeds=0 is invalid']),
    (['--root={tmp}', '--arm=piekd', '--variant=piekd'], ['--variant and --arm exclude']),
    (['--root={tmp}', '--arm=piekd', '--baseline=vanilla_sac'],
     ["--baseline='vanilla_sac' is invalid: not one of the arms piekd"]),
    (['--root={tmp}', '--override=num_seeds'], ['must be FIELD=VALUE']),
    (['--root={tmp}', '--override=variant=piekd'], ['the arms of a figure are its own']),
    (['--root={tmp}', '--curves=median'], ["--curves='median' is invalid"]),
    (['--root={tmp}', '--figure_file={tmp}/none.cfg'], ['no such file']),
    (['--root={file}'], ["--root='", "is invalid", 'is a file, not a directory']),
    (['--root={tmp}', '--profile=huge'], ['profile']),
    (['--root={tmp}', '--replay_capacity=2000000000', '--num_seeds=1000'],
     ['inverted_pendulum-vanilla_sac-', 'GiB of replay buffers', 'GiB free']),
    (['--root={tmp}', '--num_processes=2', '--process_id=1'],
     ['--coordinator_address missing']),
    (['--root={tmp}', '--parallel_groups=0'], ['--parallel_groups=0 is invalid']),
    (['--root={tmp}', '--parallel_groups=2', '--num_processes=2', '--process_id=0',
      '--coordinator_address=localhost:1'],
     ['--parallel_groups=2 is invalid with several processes']),
    (['--root={tmp}', '--parallel_groups=100000'],
     ['inverted_pendulum-vanilla_sac-', 'a 1/100000 share (--parallel_groups) of']),
])
def test_bad_input_is_one_line_and_writes_nothing(args, fragments, tmp_path):
  (tmp_path / 'file').write_text('not a directory')
  result = sweep_cli(*[a.format(tmp=tmp_path / 'root', file=tmp_path / 'file') for a in args],
                     '--nocalibrate')
  lines = result.stderr.splitlines()
  assert result.returncode == 2, result.stderr
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
  for fragment in fragments:
    assert fragment in lines[0], (fragment, lines[0])
  assert not (tmp_path / 'root').exists()


def test_the_paper_plan_lists_every_figure_and_each_run_once(tmp_path):
  # From another working directory: the figure files name each other relative to their
  # own folder.
  result = sweep_cli(f'--flagfile={os.path.join(REPO, "launch", "paper.cfg")}',
                     f'--root={tmp_path / "root"}', '--dry_run', '--nocalibrate',
                     cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0].startswith('sweep of 6 figure(s)') and 'fig8_interval (16 runs)' in lines[0]
  # 5 tasks x 3 arms of Fig. 3, and on 4 tasks the arms no earlier figure has:
  # 2 extras, hardcopy, random teacher, K = 2 and 5, I = 1000 and 100000.
  assert lines[1] == '47 unique runs: 47 new, 0 partial, 0 done, 0 busy'
  rows = [l for l in lines if l.split()[0].count('-') >= 2 and ' new ' in l]
  assert len(rows) == 47 and len({r.split()[0] for r in rows}) == 47
  hopper_piekd = next(r for r in rows if r.startswith('hopper-piekd-') and 'hardcopy' not in r)
  # 5 seeds x 1M steps; updates 5 x 3 x 990k; disk one checkpoint of 5 x 1M transitions.
  assert '5,000,000' in hopper_piekd and '14,850,000' in hopper_piekd
  total = next(l for l in lines if l.startswith('total'))
  assert '+ 47 run(s) unknown' in total
  assert not (tmp_path / 'root').exists()


def test_profile_and_overrides_scale_every_figure(tmp_path):
  result = sweep_cli('--flagfile=launch/fig8_interval.cfg', f'--root={tmp_path}',
                     '--profile=cpu', '--override=env=hopper', '--dry_run', '--nocalibrate')
  assert result.returncode == 0, result.stderr
  rows = [l for l in result.stdout.splitlines() if l.startswith('hopper-')]
  # ensemble_sac, piekd at I = 1000, 5000, 100000; 3 seeds x 100k steps each.
  assert len(rows) == 4 and all(' 300,000 ' in r for r in rows)


def test_phase_steps_of_the_plan_follow_the_phase_rule():
  config = config_lib.apply_variant(config_lib.Config(
      variant='piekd', total_steps=30_000, num_seeds=2, replay_capacity=12_000))
  status = rootdir.RunStatus(config, '', 'new')
  work = costs.work_of(status, 100, 'last')
  # Phases at 15k and 20k and 25k: 5 epochs over min(t, C) = 12,000 rows in slices of
  # 256 (47 slices), for the two students of each of two seeds.
  assert work.phase_steps == 3 * 5 * 47 * 2 * 2
  assert work.env_steps == 60_000 and work.sac_updates == 2 * 3 * 20_000
  assert work.checkpoint_bytes == 2 * 12_000 * 100
  assert costs.work_of(status, 100, 'report').checkpoint_bytes == 0


# -- run directories ---------------------------------------------------------------------


def _config(**changes):
  values = {**dict(variant='piekd', total_steps=3000, eval_every=1000, warmup_steps=500),
            **changes}
  return config_lib.apply_variant(config_lib.Config(**values))


def _write(run_dir, config, steps):
  os.makedirs(run_dir, exist_ok=True)
  with open(os.path.join(run_dir, 'config.json'), 'w', encoding='utf-8') as f:
    json.dump(dataclasses.asdict(config), f)
  with open(os.path.join(run_dir, 'metrics.jsonl'), 'w', encoding='utf-8') as f:
    for step in steps:
      f.write(json.dumps({'step': step}) + '\n')
    f.write('{"step": 99')  # a line cut by a kill


def test_the_state_of_a_run_directory(tmp_path):
  config = _config()
  run = str(tmp_path / 'run')
  assert rootdir.status_of(config, run).state == 'new'
  os.makedirs(run)
  open(os.path.join(run, rundir.LOCK_FILE), 'w').close()
  assert rootdir.status_of(config, run).state == 'new'  # killed before its config.json
  _write(run, config, [1000, 2000])
  assert (rootdir.status_of(config, run).state, rootdir.status_of(config, run).step) == (
      'partial', 2000)
  _write(run, config, [1000, 2000, 3000])
  assert rootdir.status_of(config, run).state == 'done'
  longer = dataclasses.replace(config, total_steps=5000)
  assert rootdir.status_of(longer, run).state == 'partial'  # extended
  # A run asked for longer before goes to its own end, not back to this sweep's.
  _write(run, longer, [1000])
  assert rootdir.status_of(config, run).config.total_steps == 5000
  other = rootdir.status_of(_config(actor_lr=1e-3), run)
  assert other.state == 'conflict' and 'actor_lr=0.0003 where the sweep runs 0.001' in (
      other.reason)
  assert rootdir.status_of(_config(eval_every=500), run).state == 'conflict'
  (tmp_path / 'mine').mkdir()
  (tmp_path / 'mine' / 'notes.txt').write_text('')
  assert rootdir.status_of(config, str(tmp_path / 'mine')).state == 'conflict'


def test_a_held_run_is_busy_to_everyone_else(tmp_path):
  config, run = _config(), str(tmp_path / 'run')
  with rootdir.hold(run) as held:
    assert held
    assert rootdir.status_of(config, run).state == 'busy'
    with rootdir.hold(run) as again:  # another open file description: another holder
      assert not again
  assert rootdir.status_of(config, run).state == 'new'
  # The lock file is a run's own entry: --overwrite may still replace the directory.
  _write(run, config, [1000])
  os.remove(os.path.join(run, 'metrics.jsonl'))
  rundir.check_replaceable(run)


def test_a_sweep_refuses_a_directory_that_is_not_its_run(tmp_path):
  root = tmp_path / 'root'
  name = grid.run_name(config_lib.apply_variant(config_lib.Config()))
  (root / 'runs' / name).mkdir(parents=True)
  (root / 'runs' / name / 'notes.txt').write_text('mine')
  result = sweep_cli(f'--root={root}', '--nocalibrate')
  assert result.returncode == 2 and result.stderr.count('\n') == 1, result.stderr
  assert 'it holds files but no config.json' in result.stderr
  assert sorted(os.listdir(root / 'runs' / name)) == ['notes.txt']


def test_each_group_starts_with_room_for_its_programs(tmp_path, monkeypatch):
  """The sweep frees the process's executables (when crowded) before every group, so a
  sweep over many programs never passes the OS's mapping limit."""
  from piekd_mjx import executables  # pylint: disable=g-import-not-at-top
  from piekd_mjx import run  # pylint: disable=g-import-not-at-top
  calls = []
  monkeypatch.setattr(executables, 'release_if_crowded', lambda: calls.append('room'))
  monkeypatch.setattr(run, 'run', lambda config, run_dir, **_: calls.append(
      os.path.basename(run_dir)))

  class Untrained:
    def trainer(self, config):
      return None

  dirs = [str(tmp_path / name) for name in ('a', 'b')]
  groups = [plan.Group((rootdir.status_of(_config(seed=i), d),), d)
            for i, d in enumerate(dirs)]
  assert dispatch.train_runs(groups, Untrained(), 'last') == 0
  assert calls == ['room', 'a', 'room', 'b']


def test_groups_are_runs_of_one_program_split_to_fit_memory(tmp_path):
  root = str(tmp_path)
  configs = [_config(num_seeds=2), _config(variant='piekd_hardcopy', num_seeds=2),
             _config(variant='ensemble_sac', num_seeds=1),
             _config(variant='piekd', num_seeds=2, hidden_sizes=(64, 64)),  # another program
             _config(variant='piekd_random_teacher', num_seeds=2)]
  listed = [rootdir.RunStatus(c, rootdir.run_dir(root, c), 'new') for c in configs]
  row = 100  # bytes per stored transition

  def names(groups):
    return [[configs.index(s.config) for s in g.runs] for g in groups]

  alone = plan.plan_groups(root, listed, False, lambda c: row, 2**40)
  assert names(alone) == [[0], [1], [2], [3], [4]]
  assert all(g.directory == g.runs[0].run_dir for g in alone)
  grouped = plan.plan_groups(root, listed, True, lambda c: row, 2**40)
  assert names(grouped) == [[0, 1, 2, 4], [3]]
  assert grouped[0].lanes == 7 and grouped[0].directory.startswith(
      os.path.join(root, 'groups', 'inverted_pendulum-K3-L7-'))
  # The buffers of 4 lanes fit (plus the margin): the group splits at a run's border.
  lane = configs[0].replay_capacity * row
  split = plan.plan_groups(root, listed, True, lambda c: row,
                            4 * lane + resources.MEMORY_MARGIN_BYTES)
  assert names(split) == [[0, 1], [2, 4], [3]]
  assert [g.split for g in split] == [True, True, False]
  # A group an earlier sweep checkpointed forms again, whatever the new runs; a run cut
  # while training alone resumes alone.
  started = os.path.join(root, 'groups', 'earlier')
  os.makedirs(os.path.join(started, 'checkpoints', '1000'))
  with open(os.path.join(started, rundir.GROUP_FILE), 'w', encoding='utf-8') as f:
    json.dump({'runs': [listed[4].run_dir, listed[1].run_dir]}, f)
  os.makedirs(os.path.join(listed[0].run_dir, 'checkpoints', '1000'))
  listed[0] = dataclasses.replace(listed[0], state='partial', step=1000)
  again = plan.plan_groups(root, listed, True, lambda c: row, 2**40)
  assert names(again) == [[4, 1], [0], [2], [3]]
  assert again[0].directory == started and again[1].directory == listed[0].run_dir


def test_prune_keeps_the_newest_checkpoint_or_none(tmp_path):
  for step in ('1000', '2000', '3000'):
    (tmp_path / 'checkpoints' / step).mkdir(parents=True)
  (tmp_path / 'checkpoints.corrupt' / '500').mkdir(parents=True)
  dispatch.prune(str(tmp_path), 'last')
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['3000']
  dispatch.prune(str(tmp_path), 'report')
  assert sorted(os.listdir(tmp_path)) == []


def test_a_figure_varying_another_field_draws_a_line_per_value(tmp_path):
  varied = dataclasses.replace(figure(['ensemble_sac', 'piekd'], num_seeds=(2, 3)),
                               baselines=('ensemble_sac',))
  figures_lib.write_figures(str(tmp_path), [varied])
  written = json.loads((tmp_path / 'figures' / 'f.json').read_text())
  assert written['labels'] == ['ensemble_sac [num_seeds=2]', 'ensemble_sac [num_seeds=3]',
                               'piekd [num_seeds=2]', 'piekd [num_seeds=3]']
  assert written['baselines'] == written['labels'][:2]
  assert len({c['run'] for c in written['cells']}) == 4


def test_a_calibration_is_kept_on_the_machine_and_the_roots_runs_come_first(tmp_path,
                                                                            monkeypatch):
  """The plan times a kind of run once per machine: the calibration is kept in the
  user's cache and read back by the next plan, on any root; a root whose runs have
  records of that kind uses them instead."""
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  timed = []
  monkeypatch.setattr(costs, 'calibrated_seconds_per_step',
                      lambda trainer: timed.append(trainer) or 0.004)

  class Trainers:
    def trainer(self, config):
      return config.env

  config = _config(env='hopper')
  assert costs.seconds_per_step(str(tmp_path / 'a'), config, Trainers(), False) == (
      None, 'no measurement in the root (pass --calibrate)')
  seconds, source = costs.seconds_per_step(str(tmp_path / 'a'), config, Trainers(), True)
  assert (seconds, timed) == (0.004, ['hopper']) and source.startswith('calibrated here')
  with open(costs.calibrations_path(), encoding='utf-8') as f:
    kept = json.load(f)
  assert [list(machine.values()) for machine in kept.values()] == [[0.004]]
  for calibrate in (False, True):  # another root, another sweep: no second timing
    seconds, source = costs.seconds_per_step(str(tmp_path / 'b'), config, Trainers(),
                                             calibrate)
    assert (seconds, len(timed)) == (0.004, 1) and 'before' in source
  # Another kind of run (K = 1) is timed on its own.
  other = _config(env='hopper', variant='vanilla_sac')
  assert costs.seconds_per_step(str(tmp_path / 'b'), other, Trainers(), True)[0] == 0.004
  assert len(timed) == 2
  # The root's own records of the kind win over any calibration.
  run_dir = rootdir.run_dir(str(tmp_path / 'c'), config)
  os.makedirs(run_dir)
  with open(os.path.join(run_dir, rundir.CONFIG_FILE), 'w', encoding='utf-8') as f:
    json.dump(dataclasses.asdict(config), f)
  with open(os.path.join(run_dir, rundir.METRICS_FILE), 'w', encoding='utf-8') as f:
    for step, rate in ((1000, 10.0), (2000, 50.0), (3000, 50.0)):
      f.write(json.dumps({'step': step, 'steps_per_second': rate}) + '\n')
  seconds, source = costs.seconds_per_step(str(tmp_path / 'c'), config, Trainers(), True)
  assert seconds == pytest.approx(1 / 50) and source.startswith('measured by the root')
