"""The report's figures, as PNG and SVG: per task, the arms' curves; per figure, the
aggregate over tasks and the probabilities of improvement of its claims' comparisons.

Per task: the mean over seeds of the best member's evaluation return (solid, a marker
at every evaluation), the worst member's (dashed) where the figure draws it, and the
band of the best member's mean (``statistics.method_text``). The y-axis spans the mean
curves, not the bands, so one seed's spike moves the axis only through its share of the
mean; a band that leaves the axis is cut at its edge.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from piekd_mjx import statistics as st
from piekd_mjx import verdicts as verdicts_lib
from piekd_mjx.curves import Curve


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  matplotlib.rcParams['svg.fonttype'] = 'none'  # text stays text in the SVG
  matplotlib.rcParams['svg.hashsalt'] = 'piekd'  # the same SVG from the same data
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def steps_text(steps: float) -> str:
  """200000 -> '200k', 1000000 -> '1M'."""
  if steps >= 1e6:
    return f'{steps / 1e6:g}M'
  return f'{steps / 1e3:g}k' if steps >= 1e3 else f'{steps:g}'


def _save(fig, out_dir: str, stem: str) -> list[str]:
  paths = []
  for ext in ('png', 'svg'):
    path = os.path.join(out_dir, f'{stem}.{ext}')
    fig.savefig(path, dpi=120, metadata={'Date': None} if ext == 'svg' else None)
    paths.append(path)
  _pyplot().close(fig)
  return paths


def _seeds_note(seeds: Sequence[int]) -> str:
  low, high = min(seeds), max(seeds)
  n = str(low) if low == high else f'{low}-{high}'
  warn = (f' (fewer than {st.RELIABLE_SEEDS} seeds: intervals unreliable)'
          if low < st.RELIABLE_SEEDS else '')
  return f'{n} seeds{warn}'


def task_figure(figure: dict, env: str, curves: Sequence[Curve], out_dir: str,
                resamples: int) -> list[str]:
  """The figure's plot of ``env``; returns the paths written."""
  plt = _pyplot()
  # pylint: disable=g-import-not-at-top
  from matplotlib import lines as mlines, patches as mpatches, ticker
  fig, ax = plt.subplots(figsize=(7.0, 4.6))
  draw_worst = 'worst' in figure['curves']
  handles, means = [], []
  for curve in curves:
    color = f'C{figure["labels"].index(curve.arm) % 10}'  # an arm's color on every task
    label = verdicts_lib.paper_name(curve.arm)
    if curve.partial:
      label += f' (partial: {steps_text(curve.steps[-1])} of {steps_text(curve.total_steps)})'
    mean, low, high = st.mean_per_column(curve.best.T, resamples)
    ax.plot(curve.steps, mean, color=color, marker='o', markersize=3)
    ax.fill_between(curve.steps, low, high, color=color, alpha=0.18, linewidth=0)
    means.append(mean)
    if draw_worst and not np.array_equal(curve.best, curve.worst):  # K = 1: the same
      worst = np.nanmean(curve.worst, axis=1)
      ax.plot(curve.steps, worst, color=color, linestyle='--', marker='o', markersize=2,
              linewidth=1)
      means.append(worst)
    handles.append(mlines.Line2D([], [], color=color, marker='o', markersize=3, label=label))
  seeds = [c.num_seeds for c in curves]
  handles.append(mlines.Line2D([], [], color='k', label='solid: best member, mean over seeds'))
  if draw_worst:
    handles.append(mlines.Line2D([], [], color='k', linestyle='--',
                                 label='dashed: worst member, mean over seeds'))
  handles.append(mpatches.Patch(color='k', alpha=0.18, label=(
      f'band: {st.CONFIDENCE:.0%} bootstrap CI of the best member\'s mean '
      f'(rliable, percentile, n = {"/".join(map(str, sorted(set(seeds))))})')))
  _mark_schedule(ax, curves, handles)
  _limit_y(ax, means)
  ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: steps_text(x)))
  ax.set_xlim(left=0)
  ax.set_xlabel('environment steps')
  ax.set_ylabel('evaluation return (mean of 20 episodes)')
  budget = steps_text(max(c.total_steps for c in curves))
  ax.set_title(f'{figure["title"]}: {env}\n{budget} steps, {_seeds_note(seeds)}', fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(handles=handles, fontsize=7, loc='upper left')
  fig.tight_layout()
  return _save(fig, out_dir, f'{figure["name"]}-{env}')


def _mark_schedule(ax, curves: Sequence[Curve], handles: list) -> None:
  """Vertical lines at the end of the warm-up and at each arm's first phase."""
  from matplotlib import lines as mlines  # pylint: disable=g-import-not-at-top
  warmups = sorted({c.warmup_steps for c in curves})
  for warmup in warmups:
    ax.axvline(warmup, color='0.4', linestyle=':', linewidth=1)
  handles.append(mlines.Line2D([], [], color='0.4', linestyle=':', label=(
      f'end of warm-up ({", ".join(steps_text(w) for w in warmups)})')))
  phases: dict[int, list[str]] = {}
  for c in curves:
    if c.first_phase is not None:
      phases.setdefault(c.first_phase, []).append(verdicts_lib.paper_name(c.arm))
  for step, arms in sorted(phases.items()):
    ax.axvline(step, color='0.4', linestyle='-.', linewidth=1)
    handles.append(mlines.Line2D([], [], color='0.4', linestyle='-.', label=(
        f'first phase at {steps_text(step)}: {", ".join(arms)}')))


def _limit_y(ax, means: Sequence[np.ndarray]) -> None:
  values = np.concatenate([m[np.isfinite(m)] for m in means]) if means else np.zeros(1)
  if not values.size:
    return
  low, high = float(values.min()), float(values.max())
  pad = max(high - low, 1.0)
  ax.set_ylim(low - 0.1 * pad, high + 0.45 * pad)  # room for the legend above the curves


def aggregate_tasks(figure: dict, curves: dict[tuple[str, str], Curve]) -> list[str]:
  """The tasks on which every arm of the figure has records: those the aggregate reads."""
  return sorted({env for env, _ in curves
                 if all((env, arm) in curves for arm in figure['labels'])})


def aggregate_figure(figure: dict, curves: dict[tuple[str, str], Curve], out_dir: str,
                     resamples: int) -> list[str]:
  """Over the tasks on which every arm has records: left, per arm, the IQM over tasks and
  seeds of the best member's normalised return at each evaluation all its runs share,
  with its band; right, the performance profile of the normalised areas of the finished
  runs. Returns the paths written ([] when no task has every arm)."""
  envs = aggregate_tasks(figure, curves)
  if not envs:
    return []
  plt = _pyplot()
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  labels = figure['labels']
  data = verdicts_lib.FigureData(figure['name'], curves, tuple(figure['baselines']))
  finished = data.tasks(*labels)
  fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 4.2))
  thresholds = np.linspace(0.0, 1.2, 61)
  seeds_seen = []
  for index, arm in enumerate(labels):
    arm_curves = [curves[env, arm] for env in envs]
    steps = arm_curves[0].steps
    for c in arm_curves[1:]:
      steps = np.intersect1d(steps, c.steps)
    seeds = min(c.num_seeds for c in arm_curves)
    seeds_seen.append(seeds)
    scores = np.stack([c.best[np.searchsorted(c.steps, steps), :seeds].T
                       / st.SAC_1M_RETURN[c.env] for c in arm_curves], axis=1)  # [S, N, T]
    iqm, low, high = st.iqm_per_column(scores, resamples)
    color = f'C{index % 10}'
    name = verdicts_lib.paper_name(arm)
    left.plot(steps, iqm, color=color, marker='o', markersize=3, label=name)
    left.fill_between(steps, low, high, color=color, alpha=0.18, linewidth=0)
    if finished:
      profile, plow, phigh = st.performance_profile(data.areas(finished, arm), thresholds,
                                                    resamples)
      right.plot(thresholds, profile, color=color, label=name)
      right.fill_between(thresholds, plow, phigh, color=color, alpha=0.18, linewidth=0)
  left.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: steps_text(x)))
  left.set_xlabel('environment steps')
  left.set_ylabel('IQM of return / published SAC at 1M')
  left.set_title(f'IQM over {len(envs)} task(s) and seeds, with its '
                 f'{st.CONFIDENCE:.0%} stratified bootstrap CI', fontsize=8)
  right.set_xlabel('τ: normalised area (mean return over training / SAC at 1M)')
  right.set_ylabel('fraction of runs with score > τ')
  right.set_title(f'performance profile of the areas, with its CI (tasks where every arm '
                  f'finished: {", ".join(finished) or "none yet"})', fontsize=7)
  for ax in (left, right):
    ax.grid(alpha=0.3)
    if ax.lines:
      ax.legend(fontsize=7)
  fig.suptitle(f'{figure["title"]}: over {", ".join(envs)}, {_seeds_note(seeds_seen)}',
               fontsize=9)
  fig.tight_layout()
  return _save(fig, out_dir, f'{figure["name"]}-aggregate')


def improvement_figure(figure: dict, rows: Sequence[tuple[str, str, st.Interval]],
                       out_dir: str) -> list[str]:
  """The probability of improvement of each comparison (X, Y, interval) as a point with
  its interval; returns the paths written ([] without rows)."""
  if not rows:
    return []
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(7.5, 1.5 + 0.45 * len(rows)))
  for i, (x, y, interval) in enumerate(rows):
    ax.plot([interval.low, interval.high], [i, i], color='C0', linewidth=3, alpha=0.6)
    ax.plot([interval.value], [i], 'o', color='C0')
  ax.axvline(0.5, color='0.4', linestyle=':')
  ax.set_yticks(range(len(rows)))
  ax.set_yticklabels([f'P({verdicts_lib.paper_name(x)} > {verdicts_lib.paper_name(y)})'
                      for x, y, _ in rows], fontsize=8)
  ax.set_xlim(-0.03, 1.03)
  ax.set_ylim(len(rows) - 0.5, -0.5)
  ax.set_xlabel('probability of improvement of the area (mean return over training), '
                'averaged over the finished tasks', fontsize=8)
  seeds = [interval.seeds for _, _, interval in rows]
  ax.set_title(f'{figure["title"]}\n{st.CONFIDENCE:.0%} stratified bootstrap CIs '
               f'(rliable), {_seeds_note(seeds)}', fontsize=8)
  ax.grid(alpha=0.3, axis='x')
  fig.tight_layout()
  return _save(fig, out_dir, f'{figure["name"]}-improvement')
