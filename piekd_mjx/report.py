"""The report of a sweep: ``python -m piekd_mjx.report --root=DIR`` (into ``DIR/report``).

For each figure of the root (``DIR/figures/<name>.json``, written by the sweep) and each
of its tasks, a plot of the mean over seeds of the best member's evaluation return
against environment steps, with a 95% bootstrap confidence band over the seeds
(``scipy.stats.bootstrap``, percentile method, a fixed generator), and the worst member
dashed where the figure draws it; as PNG and SVG. Runs that have not reached their
figure's total_steps are drawn as far as they go and marked "partial".

``REPORT.md`` beside them: per task and arm the final best and worst returns with
their intervals, the area under the curve (the mean return over the evaluations,
trapezoidal in steps), and the steps to reach the best baseline's converged return
(the mean of its last 10% of evaluations) with their ratio to the baseline's own; then,
for the paper's figures, a verdict on each of the paper's claims with the numbers
behind it, or "not enough data" where that is the honest word.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from typing import Callable, Sequence

from absl import flags
import numpy as np

from piekd_mjx import config_flags
from piekd_mjx import rundir

FLAGS = flags.FlagValues()
flags.DEFINE_string('root', '', "The sweep's directory (its figures/ and runs/).",
                    flag_values=FLAGS)
flags.DEFINE_string('out', '', "The report's directory ('' is ROOT/report).",
                    flag_values=FLAGS)
flags.DEFINE_integer('resamples', 9999, 'Bootstrap resamples per interval.',
                     flag_values=FLAGS)
flags.DEFINE_bool('help', False, 'Show the flags and exit.', flag_values=FLAGS)

CONFIDENCE = 0.95
CONVERGED_FRACTION = 0.1  # a converged return: the mean of the last 10% of evaluations


@dataclasses.dataclass(frozen=True)
class Curve:
  """One arm on one task: the evaluations of its run, per seed."""

  arm: str
  env: str
  steps: np.ndarray  # [T] int, the evaluation steps
  best: np.ndarray  # [T, S] the best member's return per seed
  worst: np.ndarray  # [T, S] the worst member's return per seed
  total_steps: int  # what the figure asks of the run
  run: str  # the run's directory name

  @property
  def partial(self) -> bool:
    return not len(self.steps) or int(self.steps[-1]) < self.total_steps

  @property
  def num_seeds(self) -> int:
    return self.best.shape[1]


@dataclasses.dataclass(frozen=True)
class Estimate:
  """A statistic over the seeds and its 95% bootstrap interval (NaN without one)."""

  value: float
  low: float
  high: float

  def __str__(self) -> str:
    if not math.isfinite(self.value):
      return 'n/a'
    if not math.isfinite(self.low):
      return f'{self.value:,.1f}'
    return f'{self.value:,.1f} [{self.low:,.1f}, {self.high:,.1f}]'

  def above(self, other: Estimate) -> bool:
    """Whether this interval lies wholly above ``other``'s (both defined)."""
    return self.low > other.high


def estimate(samples: np.ndarray, resamples: int, seed: int = 0) -> Estimate:
  """The mean of ``samples`` [S] and its percentile bootstrap interval (none for S < 2
  or identical samples)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  samples = np.asarray(samples, np.float64)
  samples = samples[np.isfinite(samples)]
  if not samples.size:
    return Estimate(math.nan, math.nan, math.nan)
  mean = float(samples.mean())
  if samples.size < 2 or np.all(samples == samples[0]):
    return Estimate(mean, math.nan, math.nan)
  result = stats.bootstrap((samples,), np.mean, n_resamples=resamples,
                           confidence_level=CONFIDENCE, method='percentile',
                           rng=np.random.default_rng(seed))
  interval = result.confidence_interval
  return Estimate(mean, float(interval.low), float(interval.high))


def band(values: np.ndarray, resamples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per evaluation [T, S] -> the mean over seeds and its interval, each [T]."""
  estimates = [estimate(row, resamples) for row in values]
  return tuple(np.array([getattr(e, k) for e in estimates]) for k in ('value', 'low', 'high'))


def area(steps: np.ndarray, returns: np.ndarray) -> np.ndarray:
  """The mean return over training per seed: [T, S] -> [S], the trapezoidal integral in
  steps divided by the steps it spans (the return itself with one evaluation)."""
  if len(steps) < 2:
    return returns[-1] if len(steps) else np.full(returns.shape[1:], np.nan)
  widths = np.diff(steps).astype(np.float64)[:, None]
  return np.sum(widths * (returns[1:] + returns[:-1]) / 2, axis=0) / (steps[-1] - steps[0])


def converged(curve: Curve) -> float:
  """The mean over seeds of the best member's return over the last 10% of evaluations."""
  count = max(1, int(round(CONVERGED_FRACTION * len(curve.steps))))
  return float(np.mean(curve.best[-count:]))


def steps_to_reach(curve: Curve, level: float) -> int | None:
  """The first evaluation step at which the mean best return reaches ``level``."""
  mean = curve.best.mean(axis=1)
  reached = np.nonzero(mean >= level)[0]
  return int(curve.steps[reached[0]]) if reached.size else None


def read_curve(root: str, cell: dict) -> Curve | None:
  """The ``Curve`` of one cell of a figure; None when its run has no record yet."""
  path = os.path.join(root, 'runs', cell['run'], rundir.METRICS_FILE)
  if not os.path.isfile(path):
    return None
  records = []
  with open(path, encoding='utf-8') as f:
    for line in f:
      try:
        record = json.loads(line)
      except ValueError:
        continue  # a line cut by a kill
      if record['step'] <= cell['total_steps']:
        records.append(record)
  if not records:
    return None
  records.sort(key=lambda r: r['step'])
  as_array = lambda key: np.array([[math.nan if v is None else v for v in r[key]]
                                   for r in records], np.float64)
  return Curve(arm=cell['arm'], env=cell['env'],
               steps=np.array([r['step'] for r in records]),
               best=as_array('eval/return_best'), worst=as_array('eval/return_worst'),
               total_steps=cell['total_steps'], run=cell['run'])


# -- claims ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Verdict:
  claim: str  # the paper's words
  verdict: str  # 'holds', 'does not hold', 'not enough data'
  evidence: list[str]  # the numbers behind it, one line per task


def _majority(flags_: Sequence[bool]) -> bool:
  return sum(flags_) > len(flags_) / 2


class Stats:
  """The statistics of one figure's curves, keyed by (env, arm)."""

  def __init__(self, curves: dict[tuple[str, str], Curve], resamples: int):
    self.curves, self.resamples = curves, resamples

  def envs(self, *arms: str) -> list[str]:
    """The tasks on which every one of ``arms`` has a finished run of 2+ seeds."""
    envs = sorted({env for env, _ in self.curves})
    return [env for env in envs
            if all((env, arm) in self.curves and not self.curves[env, arm].partial
                   and self.curves[env, arm].num_seeds >= 2 for arm in arms)]

  def auc(self, env: str, arm: str) -> Estimate:
    curve = self.curves[env, arm]
    return estimate(area(curve.steps, curve.best), self.resamples)

  def final(self, env: str, arm: str, which: str = 'best') -> Estimate:
    curve = self.curves[env, arm]
    return estimate(getattr(curve, which)[-1], self.resamples)


def _compare_all(stats: Stats, claim: str, arm: str, others: Sequence[str],
                 better: bool, measure: str = 'auc', need: Callable = _majority) -> Verdict:
  """``arm``'s measure above (or, ``better`` False, below) each of ``others`` on most
  tasks."""
  envs = stats.envs(arm, *others)
  if not envs:
    return Verdict(claim, 'not enough data', ['no task has finished runs of 2+ seeds of '
                                             + ', '.join([arm, *others])])
  lines, results = [], []
  for env in envs:
    mine = getattr(stats, measure)(env, arm)
    theirs = {o: getattr(stats, measure)(env, o) for o in others}
    ok = all((mine.value > t.value) == better for t in theirs.values())
    results.append(ok)
    lines.append(f'{env}: {measure} of {arm} {mine} vs ' + '; '.join(
        f'{o} {t}' for o, t in theirs.items()) + f' -> {"yes" if ok else "no"}')
  return Verdict(claim, 'holds' if need(results) else 'does not hold', lines)


def claims_fig3(stats: Stats, baselines: Sequence[str]) -> list[Verdict]:
  arm = 'piekd'
  verdicts = []
  claim = ("SAC-PIEKD usually reaches the best baseline's convergent performance in half "
           'of the environment interactions')
  envs = stats.envs(arm, *baselines)
  if not envs:
    verdicts.append(Verdict(claim, 'not enough data', ['no task has finished runs of 2+ '
                                                        'seeds of every arm']))
  else:
    lines, results = [], []
    for env in envs:
      level, best = max((converged(stats.curves[env, b]), b) for b in baselines)
      curve = stats.curves[env, arm]
      reached = steps_to_reach(curve, level)
      ok = reached is not None and reached <= curve.total_steps / 2
      results.append(ok)
      lines.append(f'{env}: best baseline {best} converges to {level:,.1f}; {arm} reaches '
                   f'it at {reached if reached is None else f"{reached:,}"} of '
                   f'{curve.total_steps:,} steps -> {"yes" if ok else "no"}')
    verdicts.append(Verdict(claim, 'holds' if _majority(results) else 'does not hold',
                            lines))
  claim = ('in the majority of tasks, our worst evaluation in the ensemble outperforms the '
           'baseline methods')
  if not envs:
    verdicts.append(Verdict(claim, 'not enough data', ['no finished runs']))
  else:
    lines, results = [], []
    for env in envs:
      worst = stats.final(env, arm, 'worst')
      theirs = {b: stats.final(env, b, 'best') for b in baselines}
      ok = all(worst.value > t.value for t in theirs.values())
      results.append(ok)
      lines.append(f'{env}: final worst member of {arm} {worst} vs best member of '
                   + '; '.join(f'{b} {t}' for b, t in theirs.items())
                   + f' -> {"yes" if ok else "no"}')
    verdicts.append(Verdict(claim, 'holds' if _majority(results) else 'does not hold',
                            lines))
  return verdicts


def claims_fig6(stats: Stats, baselines: Sequence[str]) -> list[Verdict]:
  del baselines
  arm, random = 'piekd', 'piekd_random_teacher'
  claim = ('the best teacher is slightly better than selecting a random teacher, though not '
           'significantly')
  envs = stats.envs(arm, random)
  if not envs:
    first = Verdict(claim, 'not enough data', ['no finished runs of both arms'])
  else:
    lines, results = [], []
    for env in envs:
      best, rand = stats.auc(env, arm), stats.auc(env, random)
      defined = math.isfinite(best.low) and math.isfinite(rand.low)
      ok = best.value >= rand.value and defined and not best.above(rand)
      results.append(ok)
      lines.append(f'{env}: auc {arm} {best} vs {random} {rand} -> '
                   f'{"yes" if ok else "no"}')
    first = Verdict(claim, 'holds' if _majority(results) else 'does not hold', lines)
  second = _compare_all(stats, 'using a random teacher performs better than Ensemble-SAC',
                        random, ['ensemble_sac'], better=True)
  return [first, second]


def claims_fig7(stats: Stats, baselines: Sequence[str]) -> list[Verdict]:
  del baselines
  arms = ['piekd (ensemble_size=2)', 'piekd', 'piekd (ensemble_size=5)']
  claim = 'SAC-PIEKD performs approximately the same across all three ensemble sizes'
  envs = stats.envs(*arms)
  if not envs:
    return [Verdict(claim, 'not enough data', ['no task has finished runs of all three'])]
  lines, results = [], []
  for env in envs:
    finals = [stats.final(env, a) for a in arms]
    defined = all(math.isfinite(f.low) for f in finals)
    ok = defined and not any(a.above(b) for a in finals for b in finals)
    results.append(ok)
    lines.append(f'{env}: final best ' + '; '.join(f'{a} {f}' for a, f in zip(arms, finals))
                 + f' -> intervals {"overlap" if ok else "do not all overlap"}')
  return [Verdict(claim, 'holds' if _majority(results) else 'does not hold', lines)]


def claims_fig8(stats: Stats, baselines: Sequence[str]) -> list[Verdict]:
  del baselines
  short, long_ = 'piekd (distill_interval=1000)', 'piekd (distill_interval=100000)'
  first = _compare_all(
      stats, 'SAC-PIEKD (I=1000) only achieves better performance than Ensemble-SAC in 1 of '
      '4 tasks', short, ['ensemble_sac'], better=True,
      need=lambda results: sum(results) <= max(1, len(results) // 4))
  second = _compare_all(stats, 'SAC-PIEKD (I=100000) is more sample inefficient', long_,
                        ['piekd'], better=False)
  return [first, second]


CLAIMS: dict[str, Callable[[Stats, Sequence[str]], list[Verdict]]] = {
    'fig3_main': claims_fig3,
    'fig4_extra': lambda stats, baselines: [_compare_all(
        stats, 'SAC-PIEKD reaches higher performance more rapidly than the baselines',
        'piekd', baselines, better=True)],
    'fig5_hardcopy': lambda stats, baselines: [_compare_all(
        stats, 'SAC-PIEKD (hardcopy) performs worse than both Ensemble-SAC and SAC-PIEKD',
        'piekd_hardcopy', ['ensemble_sac', 'piekd'], better=False)],
    'fig6_random_teacher': claims_fig6,
    'fig7_ensemble_size': claims_fig7,
    'fig8_interval': claims_fig8,
}


# -- output ------------------------------------------------------------------------------


def plot(figure: dict, env: str, curves: Sequence[Curve], out_dir: str,
         resamples: int) -> list[str]:
  """The figure's plot of ``env`` as PNG and SVG; returns the paths written."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  matplotlib.rcParams['svg.fonttype'] = 'none'  # text stays text in the SVG
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for curve in curves:
    color = f'C{figure["labels"].index(curve.arm) % 10}'  # an arm's color on every task
    label = curve.arm + (f' (partial: {int(curve.steps[-1]):,} of {curve.total_steps:,})'
                         if curve.partial else '')
    mean, low, high = band(curve.best, resamples)
    ax.plot(curve.steps, mean, color=color, label=label)
    ax.fill_between(curve.steps, low, high, color=color, alpha=0.2, linewidth=0)
    if 'worst' in figure['curves']:
      worst, _, _ = band(curve.worst, resamples)
      ax.plot(curve.steps, worst, color=color, linestyle='--', linewidth=1)
    if curve.partial:
      ax.plot(curve.steps[-1:], mean[-1:], color=color, marker='x')
  ax.set_xlabel('environment steps')
  ax.set_ylabel('evaluation return')
  title = f'{figure["title"]}: {env}'
  if 'worst' in figure['curves']:
    title += ' (dashed: worst member)'
  ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  paths = []
  for ext in ('png', 'svg'):
    path = os.path.join(out_dir, f'{figure["name"]}-{env}.{ext}')
    fig.savefig(path, dpi=120)
    paths.append(path)
  plt.close(fig)
  return paths


def arm_table(figure: dict, stats: Stats) -> list[str]:
  """Markdown rows: per task and arm, final returns, area, steps to the baseline."""
  lines = ['| task | arm | seeds | steps | final best | final worst | area | '
           'steps to the best baseline\'s converged return | ratio |',
           '|---|---|---|---|---|---|---|---|---|']
  for env in sorted({env for env, _ in stats.curves}):
    baselines = [b for b in figure['baselines'] if (env, b) in stats.curves]
    level, reference = (max((converged(stats.curves[env, b]), b) for b in baselines)
                        if baselines else (None, None))
    own = steps_to_reach(stats.curves[env, reference], level) if reference else None
    for arm in figure['labels']:
      if (env, arm) not in stats.curves:
        lines.append(f'| {env} | {arm} | 0 | no record yet | | | | | |')
        continue
      curve = stats.curves[env, arm]
      reached = steps_to_reach(curve, level) if level is not None else None
      ratio = f'{reached / own:.2f}' if reached and own else ''
      steps = f'{int(curve.steps[-1]):,}' + (' (partial)' if curve.partial else '')
      lines.append(
          f'| {env} | {arm} | {curve.num_seeds} | {steps} | {stats.final(env, arm)} | '
          f'{stats.final(env, arm, "worst")} | {stats.auc(env, arm)} | '
          f'{"" if level is None else ("not reached" if reached is None else f"{reached:,}")} '
          f'| {ratio} |')
  if figure['baselines']:
    lines.append('')
    lines.append('The best baseline is the baseline arm with the highest converged return '
                 '(mean over seeds of the best member, last 10% of evaluations); the ratio '
                 'is the arm\'s steps to reach it over the baseline\'s own.')
  return lines


def write_report(root: str, out_dir: str, resamples: int) -> str:
  """Writes the plots and REPORT.md of every figure of ``root``; returns REPORT.md's path."""
  figures_dir = os.path.join(root, 'figures')
  names = sorted(n for n in os.listdir(figures_dir) if n.endswith('.json'))
  os.makedirs(out_dir, exist_ok=True)
  lines = [f'# Report of {root}', '',
           'Each curve is the mean over seeds of the best member\'s evaluation return, with '
           f'a {CONFIDENCE:.0%} percentile bootstrap interval over the seeds '
           f'({resamples} resamples); intervals need at least two seeds. "area" is the mean '
           'return over the evaluations (trapezoidal in steps). Verdicts use only runs that '
           'reached their total_steps with at least two seeds.', '']
  for name in names:
    with open(os.path.join(figures_dir, name), encoding='utf-8') as f:
      figure = json.load(f)
    curves = {}
    for cell in figure['cells']:
      curve = read_curve(root, cell)
      if curve is not None:
        curves[cell['env'], cell['arm']] = curve
    stats = Stats(curves, resamples)
    lines += [f'## {figure["title"]}', '']
    for env in sorted({env for env, _ in curves}):
      shown = [curves[env, arm] for arm in figure['labels'] if (env, arm) in curves]
      paths = plot(figure, env, shown, out_dir, resamples)
      lines.append(f'![{figure["name"]} {env}]({os.path.basename(paths[0])})')
    lines += [''] + arm_table(figure, stats) + ['']
    if figure['name'] in CLAIMS:
      lines += ['### The paper\'s claims', '']
      for verdict in CLAIMS[figure['name']](stats, figure['baselines']):
        tasks = sum(line.endswith(('-> yes', '-> no', 'overlap')) for line in verdict.evidence)
        on = f' (on {tasks} task{"s" * (tasks != 1)})' if tasks else ''
        lines.append(f'- "{verdict.claim}": **{verdict.verdict}**{on}')
        lines += [f'  - {line}' for line in verdict.evidence]
      lines.append('')
  path = os.path.join(out_dir, 'REPORT.md')
  with open(f'{path}.tmp', 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')
  os.replace(f'{path}.tmp', path)
  return path


def main(argv: list[str]) -> None:
  config_flags.parse_or_exit(FLAGS, argv)
  if not FLAGS.root:
    _fail('--root is required: the directory of a sweep')
  if not os.path.isdir(os.path.join(FLAGS.root, 'figures')):
    _fail(f'--root={FLAGS.root!r} holds no sweep (no figures/ directory)')
  if FLAGS.resamples < 100:
    _fail(f'--resamples={FLAGS.resamples} is invalid: must be at least 100')
  path = write_report(FLAGS.root, FLAGS.out or os.path.join(FLAGS.root, 'report'),
                      FLAGS.resamples)
  print(f'report: {path}')


def _fail(message: str) -> None:
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(2)


if __name__ == '__main__':
  main(sys.argv)
