"""The command line of sweeps: ``python -m piekd_mjx.sweep --root=DIR ...``.

A sweep trains the runs of one or more figures (``grid.Figure``) one after another in
this process, each into ``DIR/runs/<grid.run_name>``, and writes each figure's
description to ``DIR/figures/<name>.json`` for the report. Every ``Config`` field is a
repeatable flag: the runs are the product of the values given
(``--env=hopper --env=walker2d --variant=vanilla_sac --variant=piekd`` is four runs);
``--arm=VARIANT[,FIELD=VALUE...]`` gives the lines of a figure instead of ``--variant``.
``--flagfile=launch/fig3_main.cfg`` (absl's) reads one figure's flags from a file;
``--figure_file=FILE`` (repeatable) adds a figure read from its own file, so the runs
of several figures form a union, not a product. ``--override=FIELD=VALUE`` and
``--profile`` scale the figures down without editing their files.

``--group`` (the default on an accelerator, not on a CPU) trains the runs that share
one program (``train.group_key``: task, K, sizes, schedule) as the lanes of one program
(``run.run_group``), split where their replay buffers would not fit the device. Every
run keeps its own directory, ``config.json`` and ``metrics.jsonl``, so the report does
not change; a group's checkpoints go to ``DIR/groups/<name>``, and a group cut short
is formed again and resumed by the same command.

Running a sweep again skips finished runs, resumes cut ones exactly
(``run.run(resume=True)``) and refuses a directory whose config is not the run's. A
run's directory is held with a lock while it trains (``run.lock``), so two sweeps on
one root never train the same run at once: the second skips it. SIGINT or SIGTERM
stops the sweep after the current run's checkpoint.

``--coordinator_address``, ``--num_processes`` and ``--process_id`` (or a SLURM or
Open MPI launcher) make the sweep span several processes (``processes.py``): every
process runs the same command, the groups train over all their devices one after
another, and process 0 alone prints, writes and holds the runs' locks, deciding for
all of them.

``--parallel_groups=N`` trains up to N groups at once, each in a child process with
1/N of the device's memory (``parallel.py``).

Exit codes: 0 done (or every run left was held by another sweep); 2 bad input (one
line, nothing trained); 3 a run became non-finite (the others went on); 130/143
stopped by SIGINT/SIGTERM; 1 (``--parallel_groups``) a child process ended otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import signal
import sys
import time
from typing import Any, Callable, Iterator, Sequence

from absl import flags

from piekd_mjx import config_flags
from piekd_mjx import grid
from piekd_mjx import jax_setup
from piekd_mjx import processes
from piekd_mjx import rundir
from piekd_mjx import signals
from piekd_mjx.config import Config
from piekd_mjx.resources import (MEMORY_MARGIN_BYTES, UsageError, available_memory, check_env,
                                 check_memory, check_writable)

EXIT_USAGE, EXIT_NONFINITE = 2, 3
RUNS, FIGURES, GROUPS = 'runs', 'figures', 'groups'

# Named sets of overrides that scale every figure down (``--override`` wins over them).
PROFILES: dict[str, dict[str, Any]] = {
    'paper': {},
    # The paper's protocol at a size a 2-core CPU finishes in hours: 100k steps, 3 seeds.
    'cpu': dict(total_steps=100_000, num_seeds=3),
    # Every code path in minutes: tiny networks and buffers, few steps and episodes.
    'smoke': dict(total_steps=3000, warmup_steps=1000, num_seeds=2, hidden_sizes=(32, 32),
                  batch_size=64, replay_capacity=10_000, eval_every=1000, eval_episodes=2,
                  log_every=1000, checkpoint_every=1000, distill_interval=1000,
                  distill_data='sample'),
}


def define_figure_flags(flag_values: flags.FlagValues) -> None:
  """The flags of one figure: every ``Config`` field (repeatable) and what it draws."""
  config_flags.define_multi_flags(flag_values)
  flags.DEFINE_multi_string(
      'arm', [], 'A line of the figure: VARIANT[,FIELD=VALUE...] (tuple values joined by '
      '/); repeatable. Without it every --variant is an arm.', flag_values=flag_values)
  flags.DEFINE_string('figure', 'sweep', "The figure's name (its files in the report).",
                      flag_values=flag_values)
  flags.DEFINE_string('title', '', "The figure's title.", flag_values=flag_values)
  flags.DEFINE_list('curves', ['best'], "What each arm draws: 'best' and/or 'worst' member.",
                    flag_values=flag_values)
  flags.DEFINE_multi_string('baseline', [], 'An arm (as given to --arm or --variant) that is '
                            'a baseline of the figure; repeatable.', flag_values=flag_values)


FLAGS = flags.FlagValues()
define_figure_flags(FLAGS)
flags.DEFINE_multi_string('figure_file', [], 'A file of one figure\'s flags (as for '
                          '--flagfile); repeatable: the runs are the union of the figures.',
                          flag_values=FLAGS)
flags.DEFINE_multi_string('override', [], 'FIELD=VALUE: replaces every value of FIELD in '
                          'every figure (repeat for several values); an arm\'s own settings '
                          'still win.', flag_values=FLAGS)
flags.DEFINE_enum('profile', 'paper', list(PROFILES), 'Overrides that scale every figure: '
                  + '; '.join(f'{k}: {v or "as written"}' for k, v in PROFILES.items()),
                  flag_values=FLAGS)
flags.DEFINE_string('root', '', 'The sweep\'s directory: runs/, figures/ and the report.',
                    flag_values=FLAGS)
flags.DEFINE_bool('dry_run', False, 'Print the plan and exit.', flag_values=FLAGS)
flags.DEFINE_bool('group', None, 'Train the runs that share one program (task, K, sizes, '
                  'schedule) as the lanes of one program, each run still in its own '
                  'directory. Default: yes on an accelerator, no on a CPU (where lanes run '
                  'one after another anyway).', flag_values=FLAGS)
flags.DEFINE_enum('keep', 'last', ['last', 'report'], "What a finished run keeps: 'last' "
                  'checkpoint (to extend it later) or only the report\'s files.',
                  flag_values=FLAGS)
flags.DEFINE_integer('parallel_groups', 1, 'Train this many groups (or runs alone) at '
                     'once, each in a process of its own with an equal share of the '
                     'device\'s memory (piekd_mjx/parallel.py).', flag_values=FLAGS)
flags.DEFINE_bool('calibrate', True, 'Time a few training steps of each kind of run that '
                  'the root has no measurement of, for the plan\'s time estimate.',
                  flag_values=FLAGS)
jax_setup.define_flags(FLAGS)
flags.DEFINE_bool('help', False, 'Show the flags and exit.', flag_values=FLAGS)
processes.define_flags(FLAGS)


# -- figures from flags ------------------------------------------------------------------


def parse_overrides(texts: Sequence[str], profile: str) -> dict[str, tuple]:
  """The values each overridden field takes: the profile's, then ``--override``'s."""
  overrides = {name: (value,) for name, value in PROFILES[profile].items()}
  given: dict[str, list] = {}
  for text in texts:
    name, sep, value = text.partition('=')
    if not sep:
      raise UsageError(f'--override={text!r} is invalid: must be FIELD=VALUE')
    if name == 'variant':
      raise UsageError(f'--override={text!r} is invalid: the arms of a figure are its own')
    try:
      given.setdefault(name, []).append(grid.parse_value(name, value))
    except ValueError as e:
      raise UsageError(f'--override={text!r} is invalid: {e}') from None
  overrides.update({name: tuple(values) for name, values in given.items()})
  return overrides


def figure_from_flags(flag_values: flags.FlagValues, overrides: dict[str, tuple],
                      source: str) -> grid.Figure:
  """The figure that ``flag_values`` (parsed ``define_figure_flags``) describes."""
  try:
    values = config_flags.values_from_multi_flags(flag_values)
    specs = list(flag_values.arm)
    if specs and 'variant' in values:
      raise ValueError('--variant and --arm exclude each other: give the arms with --arm')
    specs = specs or [v for v in values.pop('variant', (Config().variant,))]
    arms = tuple(grid.parse_arm(spec) for spec in specs)
    values.update(overrides)
    values.setdefault('env', (Config().env,))
    curves = tuple(flag_values.curves)
    for curve in curves:
      if curve not in grid.CURVES:
        raise ValueError(f'--curves={curve!r} is invalid: must be among '
                         + ', '.join(grid.CURVES))
    baselines = []
    for spec in flag_values.baseline:
      arm = grid.parse_arm(spec)
      if arm not in arms:
        raise ValueError(f'--baseline={spec!r} is invalid: not one of the arms '
                         + ', '.join(a.spec for a in arms))
      baselines.append(arm.label)
    figure = grid.Figure(
        name=flag_values.figure, title=flag_values.title or flag_values.figure, arms=arms,
        values=grid.values_from(values), explicit=frozenset(values) - {'env'},
        curves=curves, baselines=tuple(baselines))
    for _, config in figure.runs():  # every config validates
      check_env(config.env, config.solver)
  except ValueError as e:
    raise UsageError(f'{source}: {e}' if source else str(e)) from None
  return figure


def read_figure_file(path: str, overrides: dict[str, tuple]) -> grid.Figure:
  """The figure of a flag file (``define_figure_flags``' flags, one per line)."""
  if not os.path.isfile(path):
    raise UsageError(f'--figure_file={path!r} is invalid: no such file')
  flag_values = flags.FlagValues()
  define_figure_flags(flag_values)
  try:
    flag_values(['figure_file'] + config_flags.expand_flagfiles([f'--flagfile={path}']))
  except flags.Error as e:
    raise UsageError(f'--figure_file={path!r}: {str(e).splitlines()[0]}') from None
  return figure_from_flags(flag_values, overrides, f'--figure_file={path!r}')


def figures_from_flags(flag_values: flags.FlagValues) -> list[grid.Figure]:
  """The command line's figure (when it gives any field or arm) and every
  ``--figure_file``'s, names distinct."""
  overrides = parse_overrides(flag_values.override, flag_values.profile)
  figures = [read_figure_file(path, overrides) for path in flag_values.figure_file]
  given = [f.name for f in dataclasses.fields(Config) if flag_values[f.name].value]
  if given or flag_values.arm or not figures:
    figures.insert(0, figure_from_flags(flag_values, overrides, ''))
  names = [figure.name for figure in figures]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise UsageError(f'--figure={duplicates[0]!r} names two figures; give each its own')
  return figures


# -- the state of each run ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunStatus:
  """Where one run of the sweep stands.

  ``state``: 'new' (nothing trained), 'partial' (to resume), 'done' (its records reach
  the sweep's total_steps), 'busy' (another sweep holds it), 'conflict' (the directory
  holds something else: ``reason`` says what).
  """

  config: Config
  run_dir: str
  state: str
  step: int = 0  # the last evaluation's step on disk
  reason: str = ''


def _last_step(run_dir: str) -> int:
  """The step of the last whole record of ``metrics.jsonl`` (0 without one)."""
  return max(rundir.record_steps(run_dir), default=0)


def _held(run_dir: str) -> bool:
  """Whether another process holds ``run_dir``'s lock."""
  path = os.path.join(run_dir, rundir.LOCK_FILE)
  if not os.path.exists(path):
    return False
  with open(path, 'a', encoding='utf-8') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      return True
    fcntl.flock(f, fcntl.LOCK_UN)
  return False


def status_of(config: Config, run_dir: str, holding: bool = False) -> RunStatus:
  """The ``RunStatus`` of ``config`` in ``run_dir`` (``holding``: this process holds its
  lock, so it is not busy)."""
  if not os.path.isdir(run_dir):
    return RunStatus(config, run_dir, 'new')
  if not holding and _held(run_dir):
    return RunStatus(config, run_dir, 'busy', _last_step(run_dir))
  entries = set(os.listdir(run_dir)) - {rundir.LOCK_FILE}
  config_path = os.path.join(run_dir, rundir.CONFIG_FILE)
  if not os.path.isfile(config_path):
    if not entries:
      return RunStatus(config, run_dir, 'new')
    return RunStatus(config, run_dir, 'conflict', reason='it holds files but no config.json')
  try:
    saved = rundir.read_config(run_dir)
  except (OSError, ValueError, TypeError) as e:
    return RunStatus(config, run_dir, 'conflict', reason=f'its config.json does not read ({e})')
  differs = [name for name, value in grid.identity(saved).items()
             if grid.identity(config)[name] != value]
  differs += [name for name in ('eval_every', 'eval_episodes')
              if getattr(saved, name) != getattr(config, name)]
  if differs:
    name = differs[0]
    return RunStatus(config, run_dir, 'conflict', reason=(
        f'its config.json has {name}={getattr(saved, name)!r} where the sweep runs '
        f'{getattr(config, name)!r}'))
  step = _last_step(run_dir)
  if step >= config.total_steps:
    return RunStatus(config, run_dir, 'done', step)
  # A run asked for longer before goes on to its own end.
  target = max(config.total_steps, saved.total_steps)
  return RunStatus(dataclasses.replace(config, total_steps=target), run_dir, 'partial', step)


def statuses(root: str, figures: Sequence[grid.Figure]) -> list[RunStatus]:
  """The ``RunStatus`` of every unique run of ``figures`` under ``root``."""
  try:
    configs = grid.unique_runs(figures)
  except ValueError as e:
    raise UsageError(str(e)) from None
  return [status_of(dataclasses.replace(c, out_dir=run_dir(root, c)), run_dir(root, c))
          for c in configs]


def run_dir(root: str, config: Config) -> str:
  return os.path.join(root, RUNS, grid.run_name(config))


@contextlib.contextmanager
def hold(run_dir_: str) -> Iterator[bool]:
  """Holds ``run_dir_``'s lock while active; yields False when another process has it.
  The lock goes with the process, however it ends."""
  os.makedirs(run_dir_, exist_ok=True)
  with open(os.path.join(run_dir_, rundir.LOCK_FILE), 'a', encoding='utf-8') as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      yield False
      return
    try:
      yield True
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


# -- the plan ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Work:
  """What a run still needs, in units that do not depend on the machine."""

  env_steps: int  # environment steps, all seeds
  sac_updates: int  # SAC updates of one member, all members and seeds
  phase_steps: int  # gradient steps of the phases, all members (students) and seeds
  checkpoint_bytes: int  # disk of the checkpoints the run keeps when it is done


def phase_gradient_steps(config: Config, step: int) -> int:
  """Gradient steps of the phase after ``step``, summed over the members that learn in
  it (distillation: the students; extra updates: every member; hard copy: none)."""
  from piekd_mjx import distill  # pylint: disable=g-import-not-at-top
  if config.share == 'hardcopy':
    return 0
  per_member = distill.gradient_steps(config, min(step, config.replay_capacity))
  learners = config.ensemble_size if config.share == 'extra' else config.ensemble_size - 1
  return int(per_member) * learners


def work_of(status: RunStatus, bytes_per_transition: int, keep: str) -> Work:
  """The ``Work`` left to ``status``'s run."""
  from piekd_mjx import schedule  # pylint: disable=g-import-not-at-top
  config, start = status.config, (status.step if status.state == 'partial' else 0)
  if status.state in ('done', 'busy', 'conflict'):
    start = config.total_steps
  learning = max(0, config.total_steps - max(start, config.warmup_steps))
  phases = [t for t in schedule.phase_steps(config) if t >= start]
  seeds, members = config.num_seeds, config.ensemble_size
  replay = seeds * config.replay_capacity * bytes_per_transition
  kept = 0 if keep == 'report' else 1
  return Work(
      env_steps=seeds * (config.total_steps - min(start, config.total_steps)),
      sac_updates=seeds * members * config.updates_per_step * learning,
      phase_steps=seeds * sum(phase_gradient_steps(config, t) for t in phases),
      checkpoint_bytes=kept * replay if status.state != 'conflict' else 0)


def measured_seconds_per_step(root: str, config: Config) -> float | None:
  """Seconds per environment step (all seeds, evaluations and phases included) of the
  root's runs with the same task, K and S, from their records; None without any."""
  rates = []
  runs = os.path.join(root, RUNS)
  for name in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
    try:
      other = rundir.read_config(os.path.join(runs, name))
      with open(os.path.join(runs, name, rundir.METRICS_FILE), encoding='utf-8') as f:
        records = [json.loads(line) for line in f]
    except (OSError, ValueError, TypeError):
      continue
    same = (other.env, other.ensemble_size, other.num_seeds, other.solver, other.hidden_sizes,
            other.batch_size) == (config.env, config.ensemble_size, config.num_seeds,
                                  config.solver, config.hidden_sizes, config.batch_size)
    if same:
      rates += [r['steps_per_second'] for r in records[1:] if r.get('steps_per_second')]
  if not rates:
    return None
  rates.sort()
  return 1.0 / rates[len(rates) // 2]


def calibrated_seconds_per_step(trainer, num_steps: int = 200) -> float:
  """Seconds per training step (no evaluation or phase) of a short chunk, after a
  minibatch's worth of warm-up and one call that compiles it; the state is thrown away.
  With static control flow, where each chunk length is a program of its own, every
  chunk is ``log_every`` steps long, a length the run compiles anyway."""
  from piekd_mjx import train  # pylint: disable=g-import-not-at-top
  config, state = trainer.config, trainer.init()
  if train.static_control(config):
    num_steps = config.log_every
    for _ in range(-(-config.batch_size // num_steps)):
      state, _ = trainer.collect(state, num_steps)
    state, _ = trainer.train(state, num_steps)
  else:
    state, _ = trainer.collect(state, config.batch_size)
    state, _ = trainer.train(state, 1)
  start = time.perf_counter()
  state, metrics = trainer.train(state, num_steps)
  jax_block(metrics)
  return (time.perf_counter() - start) / num_steps


def jax_block(tree: Any) -> None:
  """Waits for ``tree``'s arrays (jax is imported only where the sweep computes)."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.block_until_ready(tree)


def _gib(n: int) -> str:
  return f'{n / 2**30:,.2f} GiB'


def _duration(seconds: float | None) -> str:
  if seconds is None:
    return '?'
  seconds = int(seconds)
  return f'{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def print_plan(root: str, figures: Sequence[grid.Figure], listed: Sequence[RunStatus],
               programs: 'Programs', keep: str, calibrate: bool) -> None:
  """The runs, their state and the work, disk and time they need."""
  print(f'sweep of {len(figures)} figure(s) into {root}: '
        + ', '.join(f'{f.name} ({len(f.runs())} runs)' for f in figures), flush=True)
  counts = {s: sum(r.state == s for r in listed) for s in ('new', 'partial', 'done', 'busy')}
  print(f'{len(listed)} unique runs: ' + ', '.join(f'{v} {k}' for k, v in counts.items()),
        flush=True)
  total = Work(0, 0, 0, 0)
  total_seconds, unknown = 0.0, 0
  estimates: dict[tuple, tuple[float | None, str]] = {}
  print(f'{"run":<44} {"state":<8} {"step":>9} {"env steps":>11} {"SAC updates":>13} '
        f'{"phase steps":>12} {"disk":>10} {"time":>9}', flush=True)
  for status in listed:
    config = status.config
    work = work_of(status, programs.bytes_per_transition(config), keep)
    key = (config.env, config.ensemble_size, config.num_seeds, config.solver,
           config.hidden_sizes, config.batch_size)
    if key not in estimates and work.env_steps:
      seconds = measured_seconds_per_step(root, config)
      source = 'measured by the root\'s runs (evaluations and phases included)'
      if seconds is None:
        source = 'no measurement in the root (pass --calibrate)'
        if calibrate:
          seconds = calibrated_seconds_per_step(programs.trainer(config))
          source = 'calibrated here: training steps only, no evaluation or phase'
      estimates[key] = (seconds, source)
    seconds_per_step, _ = estimates.get(key, (0.0, ''))
    left = config.total_steps - (status.step if status.state == 'partial' else 0)
    seconds = None if seconds_per_step is None else seconds_per_step * left * bool(
        work.env_steps)
    if seconds is None:
      unknown += 1
    else:
      total_seconds += seconds
    total = Work(*(a + b for a, b in zip(dataclasses.astuple(total),
                                         dataclasses.astuple(work))))
    note = f' ({status.reason})' if status.reason else ''
    print(f'{os.path.basename(status.run_dir):<44} {status.state:<8} {status.step:>9,} '
          f'{work.env_steps:>11,} {work.sac_updates:>13,} {work.phase_steps:>12,} '
          f'{_gib(work.checkpoint_bytes):>10} {_duration(seconds):>9}{note}', flush=True)
  print(f'{"total":<44} {"":<8} {"":>9} {total.env_steps:>11,} {total.sac_updates:>13,} '
        f'{total.phase_steps:>12,} {_gib(total.checkpoint_bytes):>10} '
        f'{_duration(total_seconds):>9}' + (f' + {unknown} run(s) unknown' if unknown else ''),
        flush=True)
  for key, (seconds, source) in sorted(estimates.items(), key=str):
    rate = f'{1 / seconds:,.1f} steps/s' if seconds else 'no estimate'
    print(f'  time of {key[0]} K={key[1]} S={key[2]}: {rate}, {source}', flush=True)


# -- groups ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Group:
  """Runs trained together as the lanes of one program; a run alone is the group of
  one whose directory is its own."""

  runs: tuple[RunStatus, ...]
  directory: str  # where the group's checkpoints (and log) go
  split: bool = False  # part of a group whose replay buffers did not fit at once

  @property
  def lanes(self) -> int:
    return sum(s.config.num_seeds for s in self.runs)

  @property
  def name(self) -> str:
    return os.path.basename(self.directory)


def group_name(configs: Sequence[Config]) -> str:
  """The directory name of a group of runs: its task, K, lanes and a digest of its runs'
  names (the same runs, the same name)."""
  names = sorted(grid.run_name(c) for c in configs)
  digest = hashlib.sha1('\n'.join(names).encode()).hexdigest()[:10]
  lanes = sum(c.num_seeds for c in configs)
  return f'{configs[0].env}-K{configs[0].ensemble_size}-L{lanes}-{digest}'


def _checkpoint_steps(directory: str) -> list[int]:
  """The steps of the checkpoints in ``directory``'s ``checkpoints/``, oldest first."""
  return rundir.checkpoint_steps(os.path.join(directory, rundir.CHECKPOINTS))


def _has_checkpoint(directory: str) -> bool:
  return bool(_checkpoint_steps(directory))


def _started_groups(root: str) -> dict[str, list[str]]:
  """The groups an earlier sweep started on ``root`` and checkpointed: directory -> the
  names of its runs, in lane order."""
  groups = {}
  top = os.path.join(root, GROUPS)
  for name in sorted(os.listdir(top)) if os.path.isdir(top) else []:
    directory = os.path.join(top, name)
    try:
      with open(os.path.join(directory, rundir.GROUP_FILE), encoding='utf-8') as f:
        runs = [os.path.basename(d) for d in json.load(f)['runs']]
    except (OSError, ValueError, KeyError, TypeError):
      continue
    if _has_checkpoint(directory):
      groups[directory] = list(runs)
  return groups


def plan_groups(root: str, listed: Sequence[RunStatus], enabled: bool,
                bytes_per_transition, available: int) -> list[Group]:
  """How the runs left are trained: each alone, or (``enabled``) in groups.

  A group an earlier sweep checkpointed is formed again with the same runs (those
  already done among them are trained again with it, to the same records); a run cut
  while training alone resumes alone; the others group by ``train.group_key`` in the
  sweep's order, a group split where its replay buffers (``bytes_per_transition(config)``
  per row) would pass ``available`` bytes. Runs another sweep holds stay in their group
  (it is skipped if one is held when it starts).
  """
  todo = [s for s in listed if s.state in ('new', 'partial', 'busy')]
  if not enabled:
    return [Group((s,), s.run_dir) for s in todo]
  from piekd_mjx import train  # pylint: disable=g-import-not-at-top
  groups, taken = [], set()
  by_name = {os.path.basename(s.run_dir): s for s in listed if s.state != 'conflict'}
  todo_names = {os.path.basename(s.run_dir) for s in todo}
  for directory, names in _started_groups(root).items():
    if (all(n in by_name and n not in taken for n in names) and todo_names & set(names)
        and len({train.group_key(by_name[n].config) for n in names}) == 1):
      groups.append(Group(tuple(by_name[n] for n in names), directory))
      taken |= set(names)
  rest = []
  for status in todo:
    if os.path.basename(status.run_dir) in taken:
      continue
    if status.state == 'partial' and _has_checkpoint(status.run_dir):
      groups.append(Group((status,), status.run_dir))  # cut while training alone
    else:
      rest.append(status)
  by_key: dict[tuple, list[RunStatus]] = {}
  for status in rest:
    by_key.setdefault(train.group_key(status.config), []).append(status)
  for members in by_key.values():
    config = members[0].config
    per_lane = config.replay_capacity * bytes_per_transition(config)
    max_lanes = max(1, (available - MEMORY_MARGIN_BYTES) // max(per_lane, 1))
    part: list[RunStatus] = []
    split = sum(s.config.num_seeds for s in members) > max_lanes
    for status in members + [None]:
      if part and (status is None or sum(s.config.num_seeds for s in part)
                   + status.config.num_seeds > max_lanes):
        if len(part) == 1:
          groups.append(Group((part[0],), part[0].run_dir))
        else:
          groups.append(Group(tuple(part), os.path.join(
              root, GROUPS, group_name([s.config for s in part])), split))
        part = []
      if status is not None:
        part.append(status)
  return groups


def print_groups(groups: Sequence[Group], bytes_per_transition, available: int,
                 where: str) -> None:
  """The groups of several runs: their lanes, replay memory and runs."""
  grouped = [g for g in groups if len(g.runs) > 1]
  if not grouped:
    return
  print(f'{len(grouped)} group(s) of runs trained as lanes of one program ({where} has '
        f'{_gib(available)} free):', flush=True)
  for group in grouped:
    config = group.runs[0].config
    memory = group.lanes * config.replay_capacity * bytes_per_transition(config)
    note = ' (split: the whole group\'s buffers do not fit)' if group.split else ''
    print(f'  {group.name}: {len(group.runs)} runs, L={group.lanes} lanes, replay '
          f'{_gib(memory)}{note}: '
          + ', '.join(os.path.basename(s.run_dir) for s in group.runs), flush=True)


# -- running -----------------------------------------------------------------------------


class Programs:
  """The trainers of the sweep's runs, built once per config in this process."""

  def __init__(self):
    self._trainers: dict[Config, Any] = {}

  def trainer(self, config: Config):
    from piekd_mjx import train  # pylint: disable=g-import-not-at-top
    key = dataclasses.replace(config, out_dir='')
    if key not in self._trainers:
      self._trainers[key] = train.make_trainer(key)
    return self._trainers[key]

  def group_trainer(self, configs: Sequence[Config]):
    from piekd_mjx import train  # pylint: disable=g-import-not-at-top
    key = tuple(dataclasses.replace(c, out_dir='') for c in configs)
    if key not in self._trainers:
      self._trainers[key] = train.make_group_trainer(key)
    return self._trainers[key]

  def bytes_per_transition(self, config: Config) -> int:
    """The bytes of one stored transition of ``config``'s task (its replay layout)."""
    from piekd_mjx import train  # pylint: disable=g-import-not-at-top
    task = train.default_task(config.env, config.solver)
    return train.make_replay(task, config.replay_capacity).bytes_per_transition


def prune(run_dir_: str, keep: str) -> None:
  """What a finished run keeps: its newest checkpoint ('last') or none ('report')."""
  checkpoints = os.path.join(run_dir_, rundir.CHECKPOINTS)
  if keep == 'report':
    for name in (rundir.CHECKPOINTS, rundir.CORRUPT):
      shutil.rmtree(os.path.join(run_dir_, name), ignore_errors=True)
    return
  for step in _checkpoint_steps(run_dir_)[:-1]:
    shutil.rmtree(os.path.join(checkpoints, str(step)))


def write_figures(root: str, figures: Sequence[grid.Figure]) -> None:
  """``root/figures/<name>.json``: each figure and the run directory of each of its
  (line, task) cells, for the report. A line is an arm, and where the figure gives
  other fields several values, the arm at each of them (``piekd [num_seeds=3]``)."""
  os.makedirs(os.path.join(root, FIGURES), exist_ok=True)
  for figure in figures:
    cells, lines, baselines = [], [], []
    for arm, config in figure.runs():
      varied = {name: getattr(config, name)
                for name, values in figure.values if len(values) > 1 and name != 'env'}
      line = arm.label + (' [' + ', '.join(f'{k}={v}' for k, v in varied.items()) + ']'
                          if varied else '')
      if line not in lines:
        lines.append(line)
        if arm.label in figure.baselines:
          baselines.append(line)
      cells.append({'arm': line, 'env': config.env, 'run': grid.run_name(config),
                    'total_steps': config.total_steps})
    path = os.path.join(root, FIGURES, f'{figure.name}.json')
    tmp = f'{path}.{os.getpid()}.tmp'  # sweeps on one root write their own
    with open(tmp, 'w', encoding='utf-8') as f:
      json.dump({**figure.to_json(), 'labels': lines, 'baselines': baselines,
                 'cells': cells}, f, indent=2)
    os.replace(tmp, path)


# A group held by another sweep (``train_group``'s answer; not an exit code).
BUSY = -1


def group_label(group: Group) -> str:
  """How the console names a group: its run's name, or its own and its size."""
  if len(group.runs) == 1:
    return os.path.basename(group.runs[0].run_dir)
  return f'group {group.name} ({len(group.runs)} runs)'


def train_group(group: Group, position: str, programs: Programs, keep: str,
                stop_signal: Callable[[], int] = lambda: 0) -> int:
  """Trains one group (a run alone, or runs as lanes) under its runs' locks and prunes
  its checkpoints; ``position`` ('[2/5] ' or '') starts its console lines. Returns 0
  (trained, or done by another sweep), ``BUSY``, ``EXIT_NONFINITE`` or 128 + the number
  of the signal that stopped it (``stop_signal()``'s, caught while its programs were
  built, or one during training, after its checkpoint); raises UsageError where its
  directories are not its runs'."""
  from piekd_mjx import checkpoint  # pylint: disable=g-import-not-at-top
  from piekd_mjx import executables  # pylint: disable=g-import-not-at-top
  from piekd_mjx import run  # pylint: disable=g-import-not-at-top
  label = group_label(group)
  with contextlib.ExitStack() as stack:
    # The primary holds the locks and decides for every process.
    held = processes.is_primary() and all(
        [stack.enter_context(hold(s.run_dir)) for s in group.runs])
    if not processes.broadcast(int(held)):
      print(f'{position}{label}: held by another sweep; skipped', flush=True)
      return BUSY
    # As they are now that this process holds them.
    runs = [status_of(s.config, s.run_dir, holding=True) for s in group.runs]
    for status in runs:
      if status.state == 'conflict':
        raise UsageError(f'{status.run_dir}: {status.reason}')
    if len(runs) == 1 and runs[0].state == 'done':
      print(f'{position}{label}: done (by another sweep)', flush=True)
      return 0
    config = runs[0].config
    executables.release_if_crowded()  # room for this group's programs
    try:
      if len(runs) == 1:
        status = runs[0]
        print(f'{position}{label}: {status.state}, {config.env} {config.variant} '
              f'S={config.num_seeds} K={config.ensemble_size} to step '
              f'{config.total_steps:,}', flush=True)
        trainer = programs.trainer(config)
        if signum := stop_signal():
          return _stopped_before(signum, label)
        run.run(config, status.run_dir, trainer=trainer, resume=status.state == 'partial')
      else:
        configs = [s.config for s in runs]
        resume = _has_checkpoint(group.directory)
        print(f'{position}{label}: {"partial" if resume else "new"}, {config.env} '
              f'K={config.ensemble_size} L={group.lanes} to step {config.total_steps:,}: '
              + ', '.join(f'{os.path.basename(s.run_dir)} ({s.state})' for s in runs),
              flush=True)
        trainer = programs.group_trainer(configs)
        if signum := stop_signal():
          return _stopped_before(signum, label)
        run.run_group(configs, [s.run_dir for s in runs], group.directory, trainer=trainer,
                      resume=resume)
    except run.NonFiniteError as e:
      print(f'error: {label}: {e}', file=sys.stderr, flush=True)
      return EXIT_NONFINITE
    except run.Stopped as e:
      print(f'{e}; checkpoint {e.checkpoint}; run the same sweep command again to go on',
            file=sys.stderr, flush=True)
      return 128 + e.signum
    except checkpoint.ResumeError as e:
      raise UsageError(f'{group.directory}: {e}') from None
    if processes.is_primary():
      prune(group.directory, keep)
  return 0


def train_runs(groups: Sequence[Group], programs: Programs, keep: str) -> int:
  """Trains every group one after another (``train_group``); returns the exit code."""
  failed, busy = [], []
  with signals.caught() as caught:
    for number, group in enumerate(groups, 1):
      if signum := processes.largest(caught[0] if caught else 0):
        return _stopped_between(signum, number, len(groups))
      code = train_group(group, f'[{number}/{len(groups)}] ', programs, keep,
                         lambda: processes.largest(caught[0] if caught else 0))
      if code == BUSY:
        busy.append(group_label(group))
      elif code == EXIT_NONFINITE:
        failed.append(group_label(group))
      elif code:
        return code
    if signum := processes.largest(caught[0] if caught else 0):
      return 128 + signum
  return summarize(busy, failed)


def summarize(busy: Sequence[str], failed: Sequence[str]) -> int:
  """Prints the groups skipped as busy and those that became non-finite; the exit code."""
  if busy:
    print(f'{len(busy)} run(s) or group(s) were held by another sweep: ' + ', '.join(busy),
          flush=True)
  if failed:
    print(f'error: {len(failed)} run(s) or group(s) became non-finite: ' + ', '.join(failed),
          file=sys.stderr, flush=True)
    return EXIT_NONFINITE
  return 0


def _stopped_before(signum: int, label: str) -> int:
  print(f'stopped by {signal.Signals(signum).name} before {label} trained; run the same '
        'sweep command again to go on', file=sys.stderr, flush=True)
  return 128 + signum


def _stopped_between(signum: int, number: int, count: int) -> int:
  if number <= count:
    print(f'stopped by {signal.Signals(signum).name} before run {number}/{count}; run the '
          'same sweep command again to go on', file=sys.stderr, flush=True)
  return 128 + signum


def main(argv: list[str]) -> None:
  config_flags.parse_or_exit(FLAGS, argv)
  try:
    if not FLAGS.root:
      raise UsageError('--root is required: the directory of the sweep\'s runs and report')
    figures = figures_from_flags(FLAGS)
    check_writable(FLAGS.root, 'root')
    listed = statuses(FLAGS.root, figures)
    conflicts = [s for s in listed if s.state == 'conflict']
    if conflicts:
      raise UsageError(f'{conflicts[0].run_dir}: {conflicts[0].reason}; it is not the run '
                       'the sweep would train there (move it away, or use another --root)')
    distributed = processes.arguments_from_flags(FLAGS)
    parallel = FLAGS.parallel_groups
    if parallel < 1:
      raise UsageError(f'--parallel_groups={parallel} is invalid: must be at least 1')
    if parallel > 1 and distributed:
      raise UsageError(f'--parallel_groups={parallel} is invalid with several processes '
                       '(--num_processes or a launcher\'s): one process trains a group '
                       'over all of them')
  except (UsageError, ValueError) as e:
    _fail(str(e))
  if parallel > 1:
    from piekd_mjx import parallel as parallel_lib  # pylint: disable=g-import-not-at-top
    parallel_lib.parent_environment()
  jax_setup.from_flags(FLAGS)
  # Every process reads the same root; none writes to it before all have joined.
  processes.initialize(distributed)
  if not processes.is_primary():
    sys.stdout = open(os.devnull, 'w', encoding='utf-8')  # the primary prints
  programs = Programs()
  from piekd_mjx import sharding  # pylint: disable=g-import-not-at-top
  # A run must fit the memory its process has: all of it, or its share with N at once.
  available = None if parallel == 1 else memory_share(available_memory(), parallel)
  try:
    for status in listed:
      if status.state in ('new', 'partial'):
        check_memory(status.config, programs.bytes_per_transition(status.config), available)
        sharding.check_run(status.config.num_devices, status.config.num_seeds)
  except (UsageError, ValueError) as e:
    _fail(f'{os.path.basename(status.run_dir)}: {e}')
  import jax  # pylint: disable=g-import-not-at-top
  print_plan(FLAGS.root, figures, listed, programs, FLAGS.keep, FLAGS.calibrate)
  enabled = FLAGS.group if FLAGS.group is not None else jax.default_backend() != 'cpu'
  free, where = available_memory()
  free = processes.smallest(free // 2**20) * 2**20  # one plan for every process
  if parallel > 1:  # each group plans with its process's share
    free, where = memory_share((free, where), parallel)
    print(f'{parallel} groups at a time, each in a process of its own with {where}: '
          f'{_gib(free)}', flush=True)
  groups = plan_groups(FLAGS.root, listed, enabled, programs.bytes_per_transition, free)
  print_groups(groups, programs.bytes_per_transition, free, where)
  for group in groups:
    try:  # a group's lanes must divide over the devices (of every process)
      sharding.check_run(group.runs[0].config.num_devices, group.lanes)
    except ValueError as e:
      _fail(f'{group.name}: {e}')
  if FLAGS.dry_run:
    sys.exit(0)
  if processes.is_primary():
    write_figures(FLAGS.root, figures)
  try:
    if parallel > 1:
      code = parallel_lib.train_groups(groups, parallel, FLAGS.keep, FLAGS.jax_cache_dir,
                                       FLAGS.command_buffers)
    else:
      code = train_runs(groups, programs, FLAGS.keep)
  except UsageError as e:
    _fail(str(e))
  except KeyboardInterrupt:
    print('interrupted; run the same sweep command again to go on', file=sys.stderr,
          flush=True)
    code = 128 + signal.SIGINT
  sys.exit(code)


def memory_share(available: tuple[int, str], parallel: int) -> tuple[int, str]:
  """The bytes, and the name, of one process's share of ``available`` (bytes, name)
  when ``parallel`` groups train at once."""
  free, where = available
  return free // parallel, f'a 1/{parallel} share (--parallel_groups) of {where}'


def _fail(message: str, code: int = EXIT_USAGE) -> None:
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(code)


if __name__ == '__main__':
  main(sys.argv)
