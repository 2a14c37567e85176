"""The report (piekd_mjx/report.py, plots.py) of runs made up here, and every committed
reproduction regenerated from its committed data."""

import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from piekd_mjx import report
from piekd_mjx import statistics as st

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPRODUCTIONS = sorted(os.path.dirname(os.path.dirname(p)) for p in glob.glob(
    os.path.join(ROOT, 'docs', 'reproduction', '*', 'report', 'REPORT.md')))


def _fake_run(root, name, variant, best, worst, steps):
  """A run directory whose records hold the given [T, S] best and worst returns."""
  run = root / 'runs' / name
  run.mkdir(parents=True)
  k = {'vanilla_sac': 1}.get(variant, 3)
  share = 'distill' if variant == 'piekd' else 'none'
  (run / 'config.json').write_text(json.dumps({
      'variant': variant, 'ensemble_size': k, 'share': share, 'warmup_steps': 2000,
      'distill_interval': 1000, 'total_steps': int(steps[-1]), 'batch_size': 64}))
  with open(run / 'metrics.jsonl', 'w', encoding='utf-8') as f:
    for t, step in enumerate(steps):
      f.write(json.dumps({'step': int(step), 'eval/return_best': list(best[t]),
                          'eval/return_worst': list(worst[t])}) + '\n')
    f.write('{"step": 99')  # a line cut by a kill


def _assert_images_exist(path):
  """Every image REPORT.md links is in its folder."""
  text = open(path, encoding='utf-8').read()
  for name in re.findall(r'\]\(([^)]+\.png)\)', text):
    assert os.path.isfile(os.path.join(os.path.dirname(path), name)), name


def _fake_figure(root, name, arms, baselines, cells, curves=('best',)):
  (root / 'figures').mkdir(exist_ok=True)
  with open(root / 'figures' / f'{name}.json', 'w', encoding='utf-8') as f:
    json.dump({'name': name, 'title': name, 'arms': arms, 'labels': arms, 'values': {},
               'curves': list(curves), 'baselines': baselines, 'cells': cells}, f)


@pytest.fixture(name='fig3')
def fixture_fig3(tmp_path):
  """Fig. 3 on hopper and walker2d, 3 seeds to 10k; PIEKD climbs twice as fast as the
  baselines and its worst member beats them; a partial PIEKD run on ant."""
  steps = np.arange(1, 11) * 1000
  ramp = np.minimum(steps / 5000, 1.0)[:, None]
  seeds = np.array([[0.0, 10.0, 20.0]])
  curves = {'vanilla_sac': (1000 * ramp / 2 + seeds, 1000 * ramp / 2 + seeds),
            'ensemble_sac': (1100 * ramp / 2 + seeds, 900 * ramp / 2 + seeds),
            'piekd': (2000 * ramp + seeds, 1500 * ramp + seeds)}
  cells = []
  for env in ('hopper', 'walker2d'):
    for arm, (best, worst) in curves.items():
      _fake_run(tmp_path, f'{env}-{arm}', arm, best, worst, steps)
      cells.append({'arm': arm, 'env': env, 'run': f'{env}-{arm}', 'total_steps': 10_000})
  _fake_run(tmp_path, 'ant-piekd', 'piekd', 2000 * ramp[:4] + seeds, 1500 * ramp[:4] + seeds,
            steps[:4])
  cells.append({'arm': 'piekd', 'env': 'ant', 'run': 'ant-piekd', 'total_steps': 10_000})
  _fake_figure(tmp_path, 'fig3_main', list(curves), ['vanilla_sac', 'ensemble_sac'], cells,
               curves=('best', 'worst'))
  return tmp_path


def test_report_tables_verdicts_and_figures_from_known_curves(fig3):
  path = report.write_report(str(fig3), str(fig3 / 'report'), resamples=500)
  _assert_images_exist(path)
  text = open(path, encoding='utf-8').read()
  # The converged return of SAC-PIEKD on hopper: 2000 + mean(0, 10, 20) = 2010.
  row = next(l for l in text.splitlines() if l.startswith('| hopper | SAC-PIEKD |'))
  cells = [c.strip() for c in row.split('|')]
  assert cells[3:5] == ['3', '10,000']
  assert cells[5].startswith('2,010.0 [') and cells[5].endswith('⚠')  # 3 seeds
  assert cells[6].startswith('1,510.0 [')
  assert '| ant | SAC-PIEKD | 3 | 4,000 (partial) |' in text
  claims_section = text.split("### The paper's claims")[1]
  assert 'ant:' not in claims_section  # the partial run gives no verdict
  assert ('"SAC-PIEKD usually reaches the best baseline\'s convergent performance in half '
          'of the environment interactions": **holds** (on 2 of the figure\'s 5 tasks)'
          in text)
  assert 'our worst evaluation in the ensemble outperforms the baseline methods": **holds**' \
      in text
  assert '| fig3_main | "In all tasks, we outperform all baselines' in text  # the rules
  assert 'stratified bootstrap confidence interval over seeds (rliable, percentile method, ' \
         '500 resamples)' in text
  for stem in ('fig3_main-hopper', 'fig3_main-ant', 'fig3_main-aggregate',
               'fig3_main-improvement'):
    assert f']({stem}.png)' in text
    assert (fig3 / 'report' / f'{stem}.png').stat().st_size > 10_000
  svg = (fig3 / 'report' / 'fig3_main-ant.svg').read_text()
  for words in ('SAC-PIEKD (partial: 4k of 10k)', 'dashed: worst member',
                'solid: best member', 'n = 3', 'end of warm-up (2k)',
                'first phase at 3k: SAC-PIEKD', 'intervals unreliable', '10k steps'):
    assert words in svg, words


def test_the_same_data_give_the_same_report_byte_for_byte(fig3):
  first = report.write_report(str(fig3), str(fig3 / 'a'), resamples=200)
  second = report.write_report(str(fig3), str(fig3 / 'b'), resamples=200, draw=False)
  assert open(first, 'rb').read() == open(second, 'rb').read()
  assert not os.path.exists(fig3 / 'b' / 'fig3_main-hopper.png')


def test_report_says_not_enough_data_with_one_seed_or_no_runs(tmp_path):
  steps = np.arange(1, 4) * 1000
  one = np.ones((3, 1))
  _fake_run(tmp_path, 'hopper-piekd', 'piekd', one, one, steps)
  _fake_figure(tmp_path, 'fig5_hardcopy', ['ensemble_sac', 'piekd', 'piekd_hardcopy'],
               ['ensemble_sac'], [
                   {'arm': 'piekd', 'env': 'hopper', 'run': 'hopper-piekd',
                    'total_steps': 3000},
                   {'arm': 'piekd_hardcopy', 'env': 'hopper', 'run': 'hopper-none',
                    'total_steps': 3000}])
  path = report.write_report(str(tmp_path), str(tmp_path / 'r'), resamples=200)
  _assert_images_exist(path)
  text = open(path, encoding='utf-8').read()
  assert 'aggregate' not in text  # no task has every arm
  assert ('performs worse than both Ensemble-SAC and SAC-PIEKD": **not enough data** '
          "(on 0 of the figure's 4 tasks)") in text
  assert '| hopper | SAC-PIEKD (hardcopy) | 0 | no record yet |' in text
  # One seed: no interval, and the mark of fewer than 5 seeds.
  assert '| hopper | SAC-PIEKD | 1 | 3,000 | 1.0 ⚠ | 1.0 ⚠ | 1.0 ⚠ |' in text


@pytest.mark.parametrize('argv, message', [
    ([], '--root is required'),
    (['--root=/nonexistent/sweep'], "--root='/nonexistent/sweep' holds no sweep"),
    (['--root=.', '--resamples=10'], '--resamples=10 is invalid'),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, argv, message):
  (tmp_path / 'figures').mkdir()
  result = subprocess.run([sys.executable, '-m', 'piekd_mjx.report', *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and message in lines[0], lines


def test_committed_reproductions_exist():
  assert REPRODUCTIONS, 'docs/reproduction/ holds no report'


@pytest.mark.parametrize('root', REPRODUCTIONS, ids=os.path.basename)
def test_each_committed_report_regenerates_from_its_committed_data(root, tmp_path):
  # As the README's command writes it: `python -m piekd_mjx.report --root=ROOT`.
  committed = os.path.join(root, 'report', 'REPORT.md')
  regenerated = report.write_report(root, str(tmp_path), st.DEFAULT_RESAMPLES, draw=False)
  with open(committed, encoding='utf-8') as a, open(regenerated, encoding='utf-8') as b:
    assert b.read() == a.read()
  for run in glob.glob(os.path.join(root, 'runs', '*')):
    assert sorted(os.listdir(run)) == ['config.json', 'metrics.jsonl'], run
