"""The paper's claims about Figs. 3-8, each with its statistic and its decision rule,
fixed before any data is read.

Every claim is judged only on runs that reached their figure's total_steps with at least
two seeds, and says on how many of the paper's tasks for that figure it was judged.
A verdict is one of ``verdicts.VERDICTS`` (holds, contradicted, inconclusive, not enough
data).

The statistics (``piekd_mjx.statistics``, rliable's stratified bootstrap):

* the score of a seed is the *area*: its best member's mean evaluation return over
  training (``curves.area``), or its worst member's where the claim says "worst";
* *P(X > Y)*: the probability of improvement of arm X over arm Y, per task or averaged
  over the tasks; "better" is its interval above 0.5, "worse" below 0.5;
* *Δ*: the mean over tasks of the paired per-seed difference of areas normalised by
  published SAC's return at 1M (``statistics.SAC_1M_RETURN``); "approximately the same"
  and "not significantly" are equivalence: Δ's interval inside ±``MARGIN``;
* counts of tasks: "in all tasks" needs every task; "usually" and "the majority of
  tasks" need more than half; a task that is neither shown nor refuted keeps the count
  open (inconclusive) until it could no longer change the verdict.

``CLAIMS`` lists them; ``table()`` writes them as the Markdown table of the report.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np

from piekd_mjx import curves as curves_lib
from piekd_mjx import statistics as st
from piekd_mjx.verdicts import (CONSISTENT_FRACTION, CONTRADICTED, HOLDS, INCONCLUSIVE, MARGIN,
                                NEVER, NO, OPEN, YES, FigureData, Verdict, all_of, every,
                                most, not_enough, paper_name, poi, poi_text, side)

PIEKD, ENSEMBLE, HARDCOPY = 'piekd', 'ensemble_sac', 'piekd_hardcopy'
RANDOM = 'piekd_random_teacher'
K2, K5 = 'piekd (ensemble_size=2)', 'piekd (ensemble_size=5)'
I1000, I100000 = 'piekd (distill_interval=1000)', 'piekd (distill_interval=100000)'


@dataclasses.dataclass(frozen=True)
class Claim:
  figure: str
  words: str  # quoted from the paper
  statistic: str
  rule: str
  judge: Callable[[FigureData], Verdict]


# -- judges --------------------------------------------------------------------------------


def _per_task_better(data: FigureData, arm: str, others: Sequence[str], which: str,
                     count: Callable[[Sequence[str]], str]) -> Verdict:
  """Per task, the area of ``arm`` (its ``which`` member) against each of ``others``'
  best member; a task is yes when better than all of them, no when worse than one."""
  tasks = data.tasks(arm, *others)
  if not tasks:
    return not_enough(data, [arm, *others])
  outcomes, numbers = [], []
  for env in tasks:
    pois = {o: poi(data, data.area(env, arm, which)[:, None], data.area(env, o)[:, None])
            for o in others}
    sides = [side(p) for p in pois.values()]
    outcome = all_of(sides)
    outcomes.append(outcome)
    numbers.append(f'{env}: ' + '; '.join(poi_text(arm, o, p, which) for o, p in pois.items())
                   + f' -> {outcome}')
  return Verdict(count(outcomes), tuple(numbers), len(tasks), data.paper_tasks)


def _consistently_better(data: FigureData, arm: str, others: Sequence[str]) -> Verdict:
  """Per task and baseline, P(X > Y) of the best member's return at each evaluation
  after ``arm``'s first phase."""
  tasks = data.tasks(arm, *others)
  if not tasks:
    return not_enough(data, [arm, *others])
  outcomes, numbers = [], []
  for env in tasks:
    mine = data.curves[env, arm]
    start = mine.first_phase if mine.first_phase is not None else mine.warmup_steps
    task_sides = []
    for other in others:
      theirs = data.curves[env, other]
      steps = [t for t in np.intersect1d(mine.steps, theirs.steps) if t > start]
      if not steps:
        task_sides.append(OPEN)
        numbers.append(f'{env}: no evaluation of both after step {start:,}')
        continue
      x = mine.best[np.searchsorted(mine.steps, steps)].T  # [S, T']
      y = theirs.best[np.searchsorted(theirs.steps, steps)].T
      _, low, high = st.probability_of_improvement_per_column(x, y, data.resamples)
      better, worse = int(np.sum(low > 0.5)), int(np.sum(high < 0.5))
      side = (NO if worse >= (1 - CONSISTENT_FRACTION) * len(steps) else
              YES if not worse and better >= CONSISTENT_FRACTION * len(steps) else OPEN)
      task_sides.append(side)
      warn = '' if min(x.shape[0], y.shape[0]) >= st.RELIABLE_SEEDS else ' ⚠'
      numbers.append(
          f'{env}: {paper_name(arm)} against {paper_name(other)} at the {len(steps)} '
          f'evaluations after step {start:,}: P(X > Y) above 0.5 at {better}, below 0.5 at '
          f'{worse}{warn} -> {side}')
    outcome = all_of(task_sides)
    outcomes.append(outcome)
  return Verdict(every(outcomes), tuple(numbers), len(tasks), data.paper_tasks)


def _reaches_in_half(data: FigureData, arm: str, baselines: Sequence[str]) -> Verdict:
  """Per task, the median over seeds of the fraction of the budget at which ``arm``'s
  best member reaches, and stays at, the best baseline's converged return."""
  tasks = data.tasks(arm, *baselines)
  if not tasks:
    return not_enough(data, [arm, *baselines])
  outcomes, numbers = [], []
  for env in tasks:
    level, best = max((float(np.mean(curves_lib.converged(data.curves[env, b].best))), b)
                      for b in baselines)
    curve = data.curves[env, arm]
    fractions = curves_lib.reach_fraction(curve, level)
    median = st.median(np.minimum(fractions, NEVER), data.resamples)
    outcome = YES if median.high <= 0.5 else NO if median.low > 0.5 else OPEN
    outcomes.append(outcome)
    seeds = ', '.join('never' if not math.isfinite(f) else f'{f:.2f}' for f in fractions)
    count = curves_lib.converged_count(len(data.curves[env, best].steps))
    numbers.append(
        f'{env}: the best baseline, {paper_name(best)}, converges to {level:,.1f} (mean over '
        f'seeds of the last {count} evaluations); {paper_name(arm)} stays at or above it '
        f'from these fractions of {curve.total_steps:,} steps: {seeds}; median '
        f'{median.text(2)} (never counted as {NEVER}) -> {outcome}')
  return Verdict(most(outcomes), tuple(numbers), len(tasks), data.paper_tasks)


def _aggregate(data: FigureData, arm: str, others: Sequence[str], want: str) -> Verdict:
  """P(X > Y) of the areas averaged over the tasks, against each of ``others``: holds
  when every interval lies on the ``want`` side of 0.5 ('above' or 'below'), is
  contradicted when one lies on the other side."""
  tasks = data.tasks(arm, *others)
  if not tasks:
    return not_enough(data, [arm, *others])
  pois = {o: poi(data, data.areas(tasks, arm), data.areas(tasks, o)) for o in others}
  flip = {YES: NO, NO: YES, OPEN: OPEN}
  sides = [side(p) if want == 'above' else flip[side(p)] for p in pois.values()]
  verdict = every([all_of(sides)])
  numbers = tuple(f'{poi_text(arm, o, p)} over {", ".join(tasks)}' for o, p in pois.items())
  return Verdict(verdict, numbers, len(tasks), data.paper_tasks)


def _delta(data: FigureData, tasks: Sequence[str], x: str, y: str) -> st.Interval:
  return st.mean_difference(data.areas(tasks, x), data.areas(tasks, y), data.resamples)


def _delta_text(x: str, y: str, interval: st.Interval, tasks: Sequence[str]) -> str:
  return (f'Δ({paper_name(x)} - {paper_name(y)}) = {interval.text(3)} over '
          f'{", ".join(tasks)} (margin ±{MARGIN})')


def _slightly_better_not_significantly(data: FigureData) -> Verdict:
  tasks = data.tasks(PIEKD, RANDOM)
  if not tasks:
    return not_enough(data, [PIEKD, RANDOM])
  d = _delta(data, tasks, PIEKD, RANDOM)
  if d.low > MARGIN or d.high < 0:
    verdict = CONTRADICTED
  elif d.low >= -MARGIN and d.high <= MARGIN and d.value >= 0:
    verdict = HOLDS
  else:
    verdict = INCONCLUSIVE
  return Verdict(verdict, (_delta_text(PIEKD, RANDOM, d, tasks),), len(tasks),
                 data.paper_tasks)


def _approximately_the_same(data: FigureData) -> Verdict:
  tasks = data.tasks(K2, PIEKD, K5)
  if not tasks:
    return not_enough(data, [K2, PIEKD, K5])
  deltas = {(x, y): _delta(data, tasks, x, y) for x, y in ((K2, PIEKD), (K5, PIEKD), (K2, K5))}
  if any(d.low > MARGIN or d.high < -MARGIN for d in deltas.values()):
    verdict = CONTRADICTED
  elif all(-MARGIN <= d.low and d.high <= MARGIN for d in deltas.values()):
    verdict = HOLDS
  else:
    verdict = INCONCLUSIVE
  numbers = tuple(_delta_text(x, y, d, tasks) for (x, y), d in deltas.items())
  return Verdict(verdict, numbers, len(tasks), data.paper_tasks)


def _better_in_one_of_four(data: FigureData) -> Verdict:
  tasks = data.tasks(I1000, ENSEMBLE)
  if not tasks:
    return not_enough(data, [I1000, ENSEMBLE])
  kinds, numbers = [], []
  for env in tasks:
    better_poi = poi(data, data.area(env, I1000)[:, None], data.area(env, ENSEMBLE)[:, None])
    d = _delta(data, [env], I1000, ENSEMBLE)
    kind = 'better' if better_poi.above(0.5) else 'not better' if d.high < MARGIN else OPEN
    kinds.append(kind)
    numbers.append(f'{env}: {poi_text(I1000, ENSEMBLE, better_poi)}; '
                   f'{_delta_text(I1000, ENSEMBLE, d, [env])} -> {kind}')
  better, not_better = kinds.count('better'), kinds.count('not better')
  complete = len(tasks) >= data.paper_tasks
  if better >= 2 or (complete and not_better == len(tasks)):
    verdict = CONTRADICTED
  elif better + not_better == len(tasks) and (better == 1 or not complete):
    verdict = HOLDS
  else:
    verdict = INCONCLUSIVE
  return Verdict(verdict, tuple(numbers), len(tasks), data.paper_tasks)


_AREA = "each seed's area (mean evaluation return over training)"
_POI_RULE = 'P(X > Y) with its 95% interval; better: above 0.5, worse: below 0.5'

CLAIMS = (
    Claim('fig3_main',
          'In all tasks, we outperform all baselines, including Vanilla-SAC and '
          'Ensemble-SAC, in terms of sample efficiency',
          f'per task, P(SAC-PIEKD > baseline) of {_AREA}, for each baseline',
          'a task is yes when better than every baseline, no when worse than one; holds '
          'when every task is yes, contradicted when one is no',
          lambda d: _per_task_better(d, PIEKD, d.baselines, 'best', every)),
    Claim('fig3_main',
          'throughout training, we have consistently better performance at similar '
          'amounts of experience',
          "per task and baseline, P(SAC-PIEKD > baseline) of the best member's return at "
          "each evaluation after SAC-PIEKD's first phase",
          f'yes when above 0.5 at {CONSISTENT_FRACTION:.0%} of those evaluations or more '
          f'and below at none, for every baseline; no when below 0.5 at '
          f'{1 - CONSISTENT_FRACTION:.0%} of them or more against one; holds when every '
          'task is yes, contradicted when one is no',
          lambda d: _consistently_better(d, PIEKD, d.baselines)),
    Claim('fig3_main',
          "SAC-PIEKD usually reaches the best baseline's convergent performance in half of "
          'the environment interactions',
          "the best baseline's converged return (the highest over baselines of the mean over "
          'seeds of the mean of its last max(3, 10%) evaluations); per seed of SAC-PIEKD, '
          'the first evaluation from which its best member stays at or above it, as a '
          'fraction of the budget; per task, the median over seeds with its interval',
          'a task is yes when the interval lies at or below 0.5, no when above 0.5; holds '
          'when more than half of the tasks are yes, contradicted when that can no longer '
          'happen',
          lambda d: _reaches_in_half(d, PIEKD, d.baselines)),
    Claim('fig3_main',
          'in the majority of tasks, our worst evaluation in the ensemble outperforms the '
          'baseline methods',
          f"per task, P(SAC-PIEKD's worst member > baseline's best member) of {_AREA}",
          'a task is yes when better than every baseline, no when worse than one; holds '
          'when more than half of the tasks are yes, contradicted when that can no longer '
          'happen',
          lambda d: _per_task_better(d, PIEKD, d.baselines, 'worst', most)),
    Claim('fig4_extra',
          'SAC-PIEKD reaches higher performance more rapidly than the baselines',
          f'P(SAC-PIEKD > baseline) of {_AREA}, averaged over the tasks, for each baseline',
          f'{_POI_RULE}; holds when better than every baseline, contradicted when worse '
          'than one',
          lambda d: _aggregate(d, PIEKD, d.baselines, 'above')),
    Claim('fig5_hardcopy',
          'SAC-PIEKD (hardcopy) performs worse than both Ensemble-SAC and SAC-PIEKD',
          f'P(SAC-PIEKD (hardcopy) > other) of {_AREA}, averaged over the tasks',
          f'{_POI_RULE}; holds when worse than both, contradicted when better than one',
          lambda d: _aggregate(d, HARDCOPY, (ENSEMBLE, PIEKD), 'below')),
    Claim('fig6_random_teacher',
          'using the highest-performing teacher for distillation appears to be slightly '
          'better than selecting a random teacher, though not significantly',
          'Δ(SAC-PIEKD - SAC-PIEKD (random teacher)): the mean over tasks of the paired '
          'per-seed difference of normalised areas, with its interval',
          f'holds when the interval lies inside ±{MARGIN} and Δ >= 0; contradicted when it '
          f'lies above {MARGIN} (significantly better) or below 0 (the random teacher better)',
          _slightly_better_not_significantly),
    Claim('fig6_random_teacher',
          'using a random teacher performs better than Ensemble-SAC',
          f'P(SAC-PIEKD (random teacher) > Ensemble-SAC) of {_AREA}, averaged over the tasks',
          f'{_POI_RULE}; holds when better, contradicted when worse',
          lambda d: _aggregate(d, RANDOM, (ENSEMBLE,), 'above')),
    Claim('fig7_ensemble_size',
          'SAC-PIEKD performs approximately the same across all three ensemble sizes',
          'Δ of normalised areas for K=2 against K=3, K=5 against K=3 and K=2 against K=5',
          f'holds when every interval lies inside ±{MARGIN}; contradicted when one lies '
          f'wholly outside it',
          _approximately_the_same),
    Claim('fig7_ensemble_size',
          'Even with an ensemble size of 2, we see better performance than Ensemble-SAC',
          f'P(SAC-PIEKD (K=2) > Ensemble-SAC) of {_AREA}, averaged over the tasks',
          f'{_POI_RULE}; holds when better, contradicted when worse',
          lambda d: _aggregate(d, K2, (ENSEMBLE,), 'above')),
    Claim('fig8_interval',
          'SAC-PIEKD (I=1000) only achieves better performance than Ensemble-SAC in 1 of 4 '
          'tasks',
          f'per task, P(SAC-PIEKD (I=1000) > Ensemble-SAC) of {_AREA} and Δ of the task',
          f'a task is better when P is above 0.5, not better when Δ lies below +{MARGIN}; '
          'holds when exactly one task is better and the others not better (with fewer '
          'than 4 tasks: at most one better, the rest not better); contradicted when two '
          'are better, or all 4 not better',
          _better_in_one_of_four),
    Claim('fig8_interval',
          'SAC-PIEKD (I=100000) is more sample inefficient',
          f'P(SAC-PIEKD (I=100000) > SAC-PIEKD) of {_AREA}, averaged over the tasks',
          f'{_POI_RULE}; holds when worse, contradicted when better',
          lambda d: _aggregate(d, I100000, (PIEKD,), 'below')),
)


def comparisons(data: FigureData) -> list[tuple[str, str]]:
  """The (X, Y) pairs whose probability of improvement the figure's claims read, or for
  a figure of another name every arm against every baseline."""
  pairs = {
      'fig3_main': [(PIEKD, b) for b in data.baselines],
      'fig4_extra': [(PIEKD, b) for b in data.baselines],
      'fig5_hardcopy': [(HARDCOPY, ENSEMBLE), (HARDCOPY, PIEKD)],
      'fig6_random_teacher': [(PIEKD, RANDOM), (RANDOM, ENSEMBLE)],
      'fig7_ensemble_size': [(K2, PIEKD), (K5, PIEKD), (K2, K5), (K2, ENSEMBLE)],
      'fig8_interval': [(I1000, ENSEMBLE), (I100000, PIEKD)],
  }.get(data.name)
  if pairs is None:
    arms = sorted({arm for _, arm in data.curves} - set(data.baselines))
    pairs = [(a, b) for a in arms for b in data.baselines]
  return [(x, y) for x, y in pairs if data.tasks(x, y)]


def improvements(data: FigureData) -> list[tuple[str, str, st.Interval]]:
  """P(X > Y) of the areas over the tasks both finished, for each of ``comparisons``."""
  rows = []
  for x, y in comparisons(data):
    tasks = data.tasks(x, y)
    rows.append((x, y, poi(data, data.areas(tasks, x), data.areas(tasks, y))))
  return rows


def of_figure(name: str) -> list[Claim]:
  return [c for c in CLAIMS if c.figure == name]


def table() -> list[str]:
  """The claims as Markdown rows: figure, the paper's words, statistic, decision rule."""
  lines = ['| figure | claim (the paper\'s words) | statistic | decision rule |',
           '|---|---|---|---|']
  for c in CLAIMS:
    lines.append(f'| {c.figure} | "{c.words}" | {c.statistic} | {c.rule} |')
  return lines
