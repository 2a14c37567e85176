"""A sweep's plan: the runs, their state, work and time, and the groups they train in.

Runs that share a ``keys.group_key`` train as the lanes of one program, split where
their replay buffers would not fit the memory a process has; a group an earlier sweep
checkpointed is formed again with the same runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Sequence

from piekd_mjx import console
from piekd_mjx import costs
from piekd_mjx import grid
from piekd_mjx import rundir
from piekd_mjx.config import Config
from piekd_mjx.resources import MEMORY_MARGIN_BYTES
from piekd_mjx.rootdir import GROUPS, RunStatus, has_checkpoint
from piekd_mjx.trainers import Trainers

def gib(n: int) -> str:
  return f'{n / 2**30:,.2f} GiB'


def print_plan(root: str, figures: Sequence[grid.Figure], listed: Sequence[RunStatus],
               trainers: Trainers, keep: str, calibrate: bool) -> None:
  """The runs, their state and the work, disk and time they need."""
  print(f'sweep of {len(figures)} figure(s) into {root}: '
        + ', '.join(f'{f.name} ({len(f.runs())} runs)' for f in figures), flush=True)
  counts = {s: sum(r.state == s for r in listed) for s in ('new', 'partial', 'done', 'busy')}
  print(f'{len(listed)} unique runs: ' + ', '.join(f'{v} {k}' for k, v in counts.items()),
        flush=True)
  total = costs.Work(0, 0, 0, 0)
  total_seconds, unknown = 0.0, 0
  estimates: dict[tuple, tuple[float | None, str]] = {}
  print(f'{"run":<44} {"state":<8} {"step":>9} {"env steps":>11} {"SAC updates":>13} '
        f'{"phase steps":>12} {"disk":>10} {"time":>9}', flush=True)
  for status in listed:
    config = status.config
    work = costs.work_of(status, trainers.bytes_per_transition(config), keep)
    key = costs.speed_key(config)
    if key not in estimates and work.env_steps:
      estimates[key] = costs.seconds_per_step(root, config, trainers, calibrate)
    seconds_per_step, _ = estimates.get(key, (0.0, ''))
    left = config.total_steps - (status.step if status.state == 'partial' else 0)
    seconds = None if seconds_per_step is None else seconds_per_step * left * bool(
        work.env_steps)
    if seconds is None:
      unknown += 1
    else:
      total_seconds += seconds
    total = costs.Work(*(a + b for a, b in zip(dataclasses.astuple(total),
                                               dataclasses.astuple(work))))
    note = f' ({status.reason})' if status.reason else ''
    print(f'{os.path.basename(status.run_dir):<44} {status.state:<8} {status.step:>9,} '
          f'{work.env_steps:>11,} {work.sac_updates:>13,} {work.phase_steps:>12,} '
          f'{gib(work.checkpoint_bytes):>10} {console.hms(seconds):>9}{note}', flush=True)
  print(f'{"total":<44} {"":<8} {"":>9} {total.env_steps:>11,} {total.sac_updates:>13,} '
        f'{total.phase_steps:>12,} {gib(total.checkpoint_bytes):>10} '
        f'{console.hms(total_seconds):>9}' + (f' + {unknown} run(s) unknown' if unknown else ''),
        flush=True)
  for key, (seconds, source) in sorted(estimates.items(), key=str):
    rate = f'{1 / seconds:,.1f} steps/s' if seconds else 'no estimate'
    print(f'  time of {key[0]} K={key[1]} S={key[2]}: {rate}, {source}', flush=True)


def memory_share(available: tuple[int, str], parallel: int) -> tuple[int, str]:
  """The bytes, and the name, of one process's share of ``available`` (bytes, name)
  when ``parallel`` groups train at once."""
  free, where = available
  return free // parallel, f'a 1/{parallel} share (--parallel_groups) of {where}'


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
    if has_checkpoint(directory):
      groups[directory] = list(runs)
  return groups


def plan_groups(root: str, listed: Sequence[RunStatus], enabled: bool,
                bytes_per_transition, available: int) -> list[Group]:
  """How the runs left are trained: each alone, or (``enabled``) in groups.

  A group an earlier sweep checkpointed is formed again with the same runs (those
  already done among them are trained again with it, to the same records); a run cut
  while training alone resumes alone; the others group by ``keys.group_key`` in the
  sweep's order, a group split where its replay buffers (``bytes_per_transition(config)``
  per row) would pass ``available`` bytes. Runs another sweep holds stay in their group
  (it is skipped if one is held when it starts).
  """
  todo = [s for s in listed if s.state in ('new', 'partial', 'busy')]
  if not enabled:
    return [Group((s,), s.run_dir) for s in todo]
  from piekd_mjx import keys as keys_lib  # pylint: disable=g-import-not-at-top
  groups, taken = [], set()
  by_name = {os.path.basename(s.run_dir): s for s in listed if s.state != 'conflict'}
  todo_names = {os.path.basename(s.run_dir) for s in todo}
  for directory, names in _started_groups(root).items():
    if (all(n in by_name and n not in taken for n in names) and todo_names & set(names)
        and len({keys_lib.group_key(by_name[n].config) for n in names}) == 1):
      groups.append(Group(tuple(by_name[n] for n in names), directory))
      taken |= set(names)
  rest = []
  for status in todo:
    if os.path.basename(status.run_dir) in taken:
      continue
    if status.state == 'partial' and has_checkpoint(status.run_dir):
      groups.append(Group((status,), status.run_dir))  # cut while training alone
    else:
      rest.append(status)
  by_key: dict[tuple, list[RunStatus]] = {}
  for status in rest:
    by_key.setdefault(keys_lib.group_key(status.config), []).append(status)
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
        f'{gib(available)} free):', flush=True)
  for group in grouped:
    config = group.runs[0].config
    memory = group.lanes * config.replay_capacity * bytes_per_transition(config)
    note = ' (split: the whole group\'s buffers do not fit)' if group.split else ''
    print(f'  {group.name}: {len(group.runs)} runs, L={group.lanes} lanes, replay '
          f'{gib(memory)}{note}: '
          + ', '.join(os.path.basename(s.run_dir) for s in group.runs), flush=True)
