"""A sweep's figures: read from flags and flag files, scaled by profiles and overrides,
and written to ``ROOT/figures/<name>.json`` for the report.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

from absl import flags

from piekd_mjx import config_flags
from piekd_mjx import files
from piekd_mjx import grid
from piekd_mjx.config import Config
from piekd_mjx.resources import UsageError, check_env
from piekd_mjx.rootdir import FIGURES

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
    files.write_atomic(os.path.join(root, FIGURES, f'{figure.name}.json'), json.dumps(
        {**figure.to_json(), 'labels': lines, 'baselines': baselines, 'cells': cells},
        indent=2))
