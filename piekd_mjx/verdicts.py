"""The words of a verdict on one of the paper's claims, and the data it is judged on.

A verdict is one of:

* **holds**: the data support the words at 95% confidence;
* **contradicted**: the data support the opposite of the words at 95% confidence;
* **inconclusive**: neither (the intervals are too wide);
* **not enough data**: no task has finished runs of the arms the claim compares.

``FigureData`` is one figure's curves; ``side``, ``every``, ``most`` and ``all_of`` turn
intervals into the outcomes of a task (yes, no, open) and outcomes into a verdict.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from piekd_mjx import curves as curves_lib
from piekd_mjx import statistics as st
from piekd_mjx.curves import Curve

HOLDS = 'holds'
CONTRADICTED = 'contradicted'
INCONCLUSIVE = 'inconclusive'
NOT_ENOUGH_DATA = 'not enough data'
VERDICTS = (HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_ENOUGH_DATA)

MARGIN = 0.1  # equivalence margin of Δ: 10% of published SAC's return at 1M
CONSISTENT_FRACTION = 0.8  # "consistently better": at 80% of the evaluations or more
NEVER = 2.0  # a seed that never reaches a level counts as reaching it at twice the budget

# The number of tasks of each figure in the paper.
PAPER_TASKS = {'fig3_main': 5, 'fig4_extra': 4, 'fig5_hardcopy': 4,
               'fig6_random_teacher': 4, 'fig7_ensemble_size': 4, 'fig8_interval': 4}

# The paper's names of the variants.
PAPER_NAMES = {'vanilla_sac': 'Vanilla-SAC', 'ensemble_sac': 'Ensemble-SAC',
               'piekd': 'SAC-PIEKD', 'vanilla_sac_extra': 'Vanilla-SAC (extra)',
               'ensemble_sac_extra': 'Ensemble-SAC (extra)',
               'piekd_hardcopy': 'SAC-PIEKD (hardcopy)',
               'piekd_random_teacher': 'SAC-PIEKD (random teacher)'}
_SETTING_NAMES = {'ensemble_size': 'K', 'distill_interval': 'I'}

def paper_name(label: str) -> str:
  """An arm's label as the paper names it: ``piekd (ensemble_size=2)`` is SAC-PIEKD (K=2)."""
  label, bracket, varied = label.partition(' [')  # a field the figure varies
  variant, _, settings = label.partition(' (')
  name = PAPER_NAMES.get(variant, variant)
  if bracket:
    return paper_name(label) + bracket + varied
  if not settings:
    return name
  parts = []
  for setting in settings.rstrip(')').split(', '):
    field, _, value = setting.partition('=')
    parts.append(f'{_SETTING_NAMES.get(field, field)}={value}')
  inner = ', '.join(parts)
  return f'{name[:-1]}, {inner})' if name.endswith(')') else f'{name} ({inner})'


@dataclasses.dataclass(frozen=True)
class Verdict:
  verdict: str  # one of VERDICTS
  numbers: tuple[str, ...]  # the numbers behind it, a line each
  tasks: int = 0  # the tasks it was judged on
  paper_tasks: int = 0

  @property
  def scope(self) -> str:
    return f"on {self.tasks} of the figure's {self.paper_tasks} tasks"


@dataclasses.dataclass(frozen=True)
class FigureData:
  """One figure's curves, keyed by (task, arm label)."""

  name: str
  curves: Mapping[tuple[str, str], Curve]
  baselines: tuple[str, ...]
  resamples: int = st.DEFAULT_RESAMPLES

  @property
  def paper_tasks(self) -> int:
    return PAPER_TASKS.get(self.name, len({env for env, _ in self.curves}))

  def tasks(self, *arms: str) -> list[str]:
    """The tasks on which every one of ``arms`` has a finished run of 2+ seeds."""
    envs = sorted({env for env, _ in self.curves})
    return [env for env in envs
            if all((env, arm) in self.curves and not self.curves[env, arm].partial
                   and self.curves[env, arm].num_seeds >= 2 for arm in arms)]

  def area(self, env: str, arm: str, which: str = 'best') -> np.ndarray:
    """[S] the seeds' areas, normalised by published SAC's return at 1M."""
    curve = self.curves[env, arm]
    return curves_lib.area(curve.steps, getattr(curve, which)) / st.SAC_1M_RETURN[env]

  def areas(self, tasks: Sequence[str], arm: str) -> np.ndarray:
    """[S, N] normalised areas on ``tasks``, over the seeds every task has."""
    columns = [self.area(env, arm) for env in tasks]
    seeds = min(len(c) for c in columns)
    return np.stack([c[:seeds] for c in columns], axis=1)


YES, NO, OPEN = 'yes', 'no', 'open'


def side(interval: st.Interval, level: float = 0.5) -> str:
  return YES if interval.above(level) else NO if interval.below(level) else OPEN


def all_of(sides: Sequence[str]) -> str:
  """One outcome of several that must all be yes: no when one is no."""
  return NO if NO in sides else YES if all(s == YES for s in sides) else OPEN


def every(outcomes: Sequence[str]) -> str:
  if NO in outcomes:
    return CONTRADICTED
  return HOLDS if all(o == YES for o in outcomes) else INCONCLUSIVE


def most(outcomes: Sequence[str]) -> str:
  yes, open_ = outcomes.count(YES), outcomes.count(OPEN)
  if yes > len(outcomes) / 2:
    return HOLDS
  return CONTRADICTED if yes + open_ <= len(outcomes) / 2 else INCONCLUSIVE


def not_enough(data: FigureData, arms: Sequence[str]) -> Verdict:
  names = ', '.join(paper_name(a) for a in arms)
  return Verdict(NOT_ENOUGH_DATA, (f'no task has finished runs of 2+ seeds of {names}',),
                 0, data.paper_tasks)


def poi(data: FigureData, x: np.ndarray, y: np.ndarray) -> st.Interval:
  return st.probability_of_improvement(x, y, data.resamples)


def poi_text(x: str, y: str, interval: st.Interval, which: str = 'best') -> str:
  member = ' (worst member)' if which == 'worst' else ''
  return f'P({paper_name(x)}{member} > {paper_name(y)}) = {interval.text(2)}'
