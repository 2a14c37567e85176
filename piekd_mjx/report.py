"""The report of a sweep: ``python -m piekd_mjx.report --root=DIR`` (into ``DIR/report``).

For each figure of the root (``DIR/figures/<name>.json``, written by the sweep): a plot
per task (``plots.task_figure``), the aggregate over its tasks and the probabilities of
improvement of its claims' comparisons (``plots``); in ``REPORT.md``, per task and arm
the converged returns and the area with their intervals (``statistics``), a filmstrip
of each arm's best member on MuJoCo C where its run keeps a checkpoint (``agents``),
then each of the paper's claims about the figure with its verdict and the numbers
behind it (``claims``). Runs that have not reached their figure's total_steps are drawn
as far as they go, marked partial, and left out of the verdicts. The report is a
function of the runs' ``config.json``, ``metrics.jsonl`` and checkpoint steps and the
figures' JSON: the same data give the same ``REPORT.md``, byte for byte (on machines
that can all draw pictures, or none). docs/REPORT.md explains the statistics and holds
the table of the claims and their decision rules.
"""

from __future__ import annotations

import json
import os
import sys

from absl import flags

from piekd_mjx import agents as agents_lib
from piekd_mjx import claims as claims_lib
from piekd_mjx import config_flags
from piekd_mjx import console
from piekd_mjx import curves as curves_lib
from piekd_mjx import files
from piekd_mjx import plots
from piekd_mjx import statistics as st
from piekd_mjx import verdicts as verdicts_lib

FLAGS = flags.FlagValues()
flags.DEFINE_string('root', '', "The sweep's directory (its figures/ and runs/).",
                    flag_values=FLAGS)
flags.DEFINE_string('out', '', "The report's directory ('' is ROOT/report).",
                    flag_values=FLAGS)
flags.DEFINE_integer('resamples', st.DEFAULT_RESAMPLES, 'Bootstrap resamples per interval.',
                     flag_values=FLAGS)
flags.DEFINE_bool('plots', True, 'Write the figures (off: REPORT.md alone).',
                  flag_values=FLAGS)
flags.DEFINE_bool('agents', True, 'A filmstrip of each arm\'s best member on MuJoCo C, '
                  'for runs that keep a checkpoint (needs an OpenGL backend).',
                  flag_values=FLAGS)
flags.DEFINE_bool('help', False, 'Show the flags and exit.', flag_values=FLAGS)


def read_figure(root: str, name: str, resamples: int) -> tuple[dict, verdicts_lib.FigureData]:
  """The figure's JSON and the curves of its runs that have records."""
  with open(os.path.join(root, 'figures', name), encoding='utf-8') as f:
    figure = json.load(f)
  curves = {}
  for cell in figure['cells']:
    curve = curves_lib.read_curve(root, cell)
    if curve is not None:
      curves[cell['env'], cell['arm']] = curve
  return figure, verdicts_lib.FigureData(figure['name'], curves, tuple(figure['baselines']),
                                       resamples)


def arm_table(figure: dict, data: verdicts_lib.FigureData) -> list[str]:
  """Markdown rows: per task and arm, seeds, steps, converged returns and area."""
  lines = ['| task | arm | seeds | steps | converged return, best member | '
           'converged return, worst member | area (mean return over training) |',
           '|---|---|--:|--:|--:|--:|--:|']
  for env in sorted({env for env, _ in data.curves}):
    for arm in figure['labels']:
      name = verdicts_lib.paper_name(arm)
      if (env, arm) not in data.curves:
        lines.append(f'| {env} | {name} | 0 | no record yet | | | |')
        continue
      curve = data.curves[env, arm]
      steps = f'{int(curve.steps[-1]):,}' + (' (partial)' if curve.partial else '')
      best = st.mean(curves_lib.converged(curve.best), data.resamples)
      worst = st.mean(curves_lib.converged(curve.worst), data.resamples)
      area = st.mean(curves_lib.area(curve.steps, curve.best), data.resamples)
      lines.append(f'| {env} | {name} | {curve.num_seeds} | {steps} | {best.text()} | '
                   f'{worst.text()} | {area.text()} |')
  return lines


def figure_section(root: str, name: str, out_dir: str, resamples: int, draw: bool,
                   agents: bool = True) -> list[str]:
  """REPORT.md's section of one figure, writing its plots (and, ``agents``, its agents'
  filmstrips) into ``out_dir``."""
  figure, data = read_figure(root, name, resamples)
  lines = [f'## {figure["title"]}', '']
  envs = sorted({env for env, _ in data.curves})
  images = []
  for env in envs:
    shown = [data.curves[env, arm] for arm in figure['labels'] if (env, arm) in data.curves]
    images.append((f'{figure["name"]} {env}', f'{figure["name"]}-{env}.png'))
    if draw:
      plots.task_figure(figure, env, shown, out_dir, resamples)
  if plots.aggregate_tasks(figure, dict(data.curves)):
    images.append((f'{figure["name"]} over tasks', f'{figure["name"]}-aggregate.png'))
    if draw:
      plots.aggregate_figure(figure, dict(data.curves), out_dir, resamples)
  rows = claims_lib.improvements(data)
  if rows:
    images.append((f'{figure["name"]} probabilities of improvement',
                   f'{figure["name"]}-improvement.png'))
    if draw:
      plots.improvement_figure(figure, rows, out_dir)
  lines += [f'![{alt}]({path})' for alt, path in images]
  lines += ['', *arm_table(figure, data), '']
  if agents:
    lines += agents_lib.section(figure, root, out_dir, draw)
  claims = claims_lib.of_figure(figure['name'])
  if claims:
    lines += ["### The paper's claims", '']
    for claim in claims:
      verdict = claim.judge(data)
      lines.append(f'- "{claim.words}": **{verdict.verdict}** ({verdict.scope})')
      lines += [f'  - {line}' for line in verdict.numbers]
    lines.append('')
  return lines


def preamble(root: str, resamples: int) -> list[str]:
  """What the numbers are, how the intervals are made, and the claims' rules."""
  return [
      f'# Report of {os.path.basename(os.path.normpath(root))}', '',
      'Every interval is a ' + st.method_text(resamples) + '; an interval over fewer than '
      f'{st.RELIABLE_SEEDS} seeds is marked ⚠: with so few seeds a percentile interval is '
      'narrower than it claims. A *converged return* is the mean of the last '
      f'max({curves_lib.CONVERGED_MIN_EVALUATIONS}, {curves_lib.CONVERGED_FRACTION:.0%}) '
      'evaluations of a seed; the *area* is the mean return over training (trapezoidal in '
      'steps). Normalised scores divide by published SAC\'s return at 1M steps: '
      + ', '.join(f'{env} {value:,.0f}' for env, value in sorted(st.SAC_1M_RETURN.items()))
      + '. Verdicts use only runs that reached their total_steps with two seeds or more.',
      '', '### How each claim is decided', '', *claims_lib.table(), '']


def write_report(root: str, out_dir: str, resamples: int, draw: bool = True,
                 agents: bool = True) -> str:
  """Writes the plots and REPORT.md of every figure of ``root`` (with ``agents``, the
  filmstrips of runs that keep a checkpoint: ``agents.py``); returns REPORT.md's path."""
  names = sorted(n for n in os.listdir(os.path.join(root, 'figures')) if n.endswith('.json'))
  os.makedirs(out_dir, exist_ok=True)
  lines = preamble(root, resamples)
  for name in names:
    lines += figure_section(root, name, out_dir, resamples, draw, agents)
  path = os.path.join(out_dir, 'REPORT.md')
  files.write_atomic(path, '\n'.join(lines) + '\n')
  return path


def main(argv: list[str]) -> None:
  config_flags.parse_or_exit(FLAGS, argv)
  if not FLAGS.root:
    console.fail('--root is required: the directory of a sweep')
  if not os.path.isdir(os.path.join(FLAGS.root, 'figures')):
    console.fail(f'--root={FLAGS.root!r} holds no sweep (no figures/ directory)')
  if FLAGS.resamples < 100:
    console.fail(f'--resamples={FLAGS.resamples} is invalid: must be at least 100')
  path = write_report(FLAGS.root, FLAGS.out or os.path.join(FLAGS.root, 'report'),
                      FLAGS.resamples, FLAGS.plots, FLAGS.agents)
  print(f'report: {path}')


if __name__ == '__main__':
  main(sys.argv)
