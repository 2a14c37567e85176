"""The decision rules of the paper's claims (piekd_mjx/claims.py) on synthetic curves
whose answer is known by construction, with 3 and 10 seeds, on one task and on five;
every claim, all four verdicts. An arm is made better or worse than another by its level
with little noise; "inconclusive" is made by arms equal in distribution: the same noise
draws (the probability of improvement is then 0.5 with an interval around it), or seeds
spread alternately above and below the other arm (the paired difference is about 0 with
an interval wider than the equivalence margin)."""

import os
import zlib

import numpy as np
import pytest

from piekd_mjx import claims
from piekd_mjx import statistics as st
from piekd_mjx import verdicts
from piekd_mjx.curves import Curve

STEPS = np.arange(1, 11) * 10_000  # ten evaluations to 100k
RAMP = STEPS / 100_000
TASKS = ('hopper', 'walker2d', 'halfcheetah', 'ant', 'humanoid')
RESAMPLES = 200
CLEAN, NOISY = 0.01, 0.4  # per-evaluation noise, as a fraction of SAC's return at 1M


def _curve(env, arm, level, seeds, noise, partial=False, spread=0.0):
  """Returns that climb linearly to ``level`` x SAC's return at 1M, plus noise (the same
  draws for every arm of a task), plus ``spread`` x the ramp on even seeds and minus it on
  odd ones."""
  rng = np.random.default_rng(zlib.crc32(f'{env}/{seeds}/{noise}'.encode()))
  scale = st.SAC_1M_RETURN[env]
  signs = np.where(np.arange(seeds) % 2, -1.0, 1.0)
  best = scale * ((level + spread * signs) * RAMP[:, None]
                  + noise * rng.standard_normal((len(STEPS), seeds)))
  worst = best - 0.1 * scale * RAMP[:, None]
  count = 4 if partial else len(STEPS)
  return Curve(arm=arm, env=env, steps=STEPS[:count], best=best[:count], worst=worst[:count],
               total_steps=100_000, run=f'{env}-{arm}', warmup_steps=10_000,
               first_phase=15_000 if arm.startswith('piekd') else None)


def _data(figure, levels, seeds, tasks, noise=CLEAN, baselines=(), partial=(), spread=None):
  """``levels``: arm -> its level on every task, or a list of one level per task;
  ``spread``: arm -> its spread."""
  curves = {}
  for i, env in enumerate(TASKS[:tasks]):
    for arm, level in levels.items():
      if level is None:
        continue
      level = level[i] if isinstance(level, list) else level
      arm_seeds = seeds(arm) if callable(seeds) else seeds
      curves[env, arm] = _curve(env, arm, level, arm_seeds, noise, partial=arm in partial,
                                spread=(spread or {}).get(arm, 0.0))
  return verdicts.FigureData(figure, curves, tuple(baselines), RESAMPLES)


def _judge(index, data):
  claim = claims.CLAIMS[index]
  assert claim.figure == data.name
  return claim.judge(data)


FIG3_BASELINES = ('vanilla_sac', 'ensemble_sac')


def _fig3(piekd, vanilla, ensemble, seeds, tasks, noise=CLEAN, **kwargs):
  return _data('fig3_main', {'vanilla_sac': vanilla, 'ensemble_sac': ensemble,
                             'piekd': piekd}, seeds, tasks, noise, FIG3_BASELINES, **kwargs)


# Scenarios: claim index -> verdict -> function (seeds, tasks) -> FigureData.
SCENARIOS = {
    0: {  # in all tasks, better than every baseline
        verdicts.HOLDS: lambda s, n: _fig3(1.0, 0.5, 0.6, s, n),
        verdicts.CONTRADICTED: lambda s, n: _fig3([0.3] + [1.0] * 4, 0.5, 0.6, s, n),
        verdicts.INCONCLUSIVE: lambda s, n: _fig3(0.8, 0.5, 0.8, s, n, noise=NOISY),
        verdicts.NOT_ENOUGH_DATA: lambda s, n: _fig3(1.0, None, 0.6, s, n),
    },
    1: {  # (with identical draws, Ensemble-SAC equals SAC-PIEKD at every evaluation)  # throughout training, consistently better
        verdicts.HOLDS: lambda s, n: _fig3(1.0, 0.5, 0.6, s, n),
        verdicts.CONTRADICTED: lambda s, n: _fig3(0.5, 0.5, 1.0, s, n),
        verdicts.INCONCLUSIVE: lambda s, n: _fig3(0.8, 0.8, 0.8, s, n, noise=NOISY),
        verdicts.NOT_ENOUGH_DATA: lambda s, n: _fig3(1.0, 0.5, 0.6, 1, n),
    },
    2: {  # usually reaches the best baseline's converged return in half the steps
        verdicts.HOLDS: lambda s, n: _fig3(2.0, 0.5, 0.6, s, n),
        verdicts.CONTRADICTED: lambda s, n: _fig3(0.6, 0.5, 0.6, s, n),
        # Even seeds reach it in a quarter of the steps, odd ones never.
        verdicts.INCONCLUSIVE: lambda s, n: _fig3(1.0, 0.5, 0.5, s, n,
                                                  spread={'piekd': 1.0}),
        verdicts.NOT_ENOUGH_DATA: lambda s, n: _fig3(2.0, 0.5, 0.6, s, n, partial=('piekd',)),
    },
    3: {  # in the majority of tasks, the worst member beats the baselines
        verdicts.HOLDS: lambda s, n: _fig3(2.0, 0.5, 0.6, s, n),
        verdicts.CONTRADICTED: lambda s, n: _fig3(0.5, 1.0, 1.0, s, n),
        # SAC-PIEKD's worst member (its best less 0.1 of the ramp) equals the baselines.
        verdicts.INCONCLUSIVE: lambda s, n: _fig3(0.9, 0.8, 0.8, s, n, noise=NOISY),
        verdicts.NOT_ENOUGH_DATA: lambda s, n: _fig3(2.0, 0.5, None, s, n),
    },
}


def _three(figure, names, baselines=()):
  """Scenarios of an aggregate comparison of names[0] against the others."""
  first, others = names[0], names[1:]

  def make(levels, noise=CLEAN, drop=None):
    def build(s, n):
      return _data(figure, {a: (None if a == drop else levels[a]) for a in names}, s, n,
                   noise, baselines)
    return build

  equal = dict.fromkeys(names, 0.8)  # and the same draws: equal curves
  return first, others, make, equal


def _aggregate_scenarios(figure, names, want, baselines=()):
  first, others, make, equal = _three(figure, names, baselines)
  good = {first: 1.0 if want == 'above' else 0.3, **dict.fromkeys(others, 0.6)}
  bad = {first: 0.3 if want == 'above' else 1.0, **dict.fromkeys(others, 0.6)}
  return {verdicts.HOLDS: make(good), verdicts.CONTRADICTED: make(bad),
          verdicts.INCONCLUSIVE: make(equal, NOISY),
          verdicts.NOT_ENOUGH_DATA: make(good, drop=others[0])}


SCENARIOS[4] = _aggregate_scenarios(
    'fig4_extra', ['piekd', 'vanilla_sac_extra', 'ensemble_sac_extra'], 'above',
    ('vanilla_sac_extra', 'ensemble_sac_extra'))
SCENARIOS[5] = _aggregate_scenarios(
    'fig5_hardcopy', ['piekd_hardcopy', 'ensemble_sac', 'piekd'], 'below', ('ensemble_sac',))
SCENARIOS[7] = _aggregate_scenarios(
    'fig6_random_teacher', ['piekd_random_teacher', 'ensemble_sac'], 'above',
    ('ensemble_sac',))
SCENARIOS[9] = _aggregate_scenarios(
    'fig7_ensemble_size', [claims.K2, 'ensemble_sac'], 'above', ('ensemble_sac',))
SCENARIOS[11] = _aggregate_scenarios(
    'fig8_interval', [claims.I100000, 'piekd'], 'below', ('ensemble_sac',))


def _fig6(piekd, random, seeds, tasks, spread=0.0):
  return _data('fig6_random_teacher', {'ensemble_sac': 0.5, 'piekd': piekd,
                                       'piekd_random_teacher': random}, seeds, tasks, CLEAN,
               ('ensemble_sac',), spread={'piekd': spread})


SCENARIOS[6] = {  # slightly better than a random teacher, not significantly
    verdicts.HOLDS: lambda s, n: _fig6(0.81, 0.80, s, n),
    verdicts.CONTRADICTED: lambda s, n: _fig6(1.2, 0.6, s, n),
    verdicts.INCONCLUSIVE: lambda s, n: _fig6(0.8, 0.8, s, n, spread=1.0),
    verdicts.NOT_ENOUGH_DATA: lambda s, n: _fig6(0.8, None, s, n),
}


def _fig7(k2, k3, k5, seeds, tasks, spread=0.0):
  return _data('fig7_ensemble_size', {'ensemble_sac': 0.5, claims.K2: k2, 'piekd': k3,
                                      claims.K5: k5}, seeds, tasks, CLEAN, ('ensemble_sac',),
               spread={claims.K5: spread})


SCENARIOS[8] = {  # approximately the same for K = 2, 3, 5
    verdicts.HOLDS: lambda s, n: _fig7(0.8, 0.8, 0.8, s, n),
    verdicts.CONTRADICTED: lambda s, n: _fig7(0.8, 0.8, 1.4, s, n),
    verdicts.INCONCLUSIVE: lambda s, n: _fig7(0.8, 0.8, 0.8, s, n, spread=1.0),
    verdicts.NOT_ENOUGH_DATA: lambda s, n: _fig7(0.8, None, 0.8, s, n),
}


def _fig8(i1000, seeds, tasks, spread=0.0):
  return _data('fig8_interval', {'ensemble_sac': 0.6, claims.I1000: i1000, 'piekd': 0.8},
               seeds, tasks, CLEAN, ('ensemble_sac',), spread={claims.I1000: spread})


SCENARIOS[10] = {  # better than Ensemble-SAC on only 1 of 4 tasks
    # Better on the first task, the same as Ensemble-SAC on the others.
    verdicts.HOLDS: lambda s, n: _fig8([1.2] + [0.6] * 4 if n >= 4 else [0.6], s, n),
    # Better on two tasks (one task alone cannot contradict "1 of 4": it takes two).
    verdicts.CONTRADICTED: lambda s, n: _fig8(1.2, s, max(n, 2)),
    verdicts.INCONCLUSIVE: lambda s, n: _fig8(0.6, s, n, spread=1.0),
    verdicts.NOT_ENOUGH_DATA: lambda s, n: _fig8(None, s, n),
}

CASES = [(index, verdict, seeds, tasks)
         for index in sorted(SCENARIOS) for verdict in verdicts.VERDICTS
         for seeds in (3, 10) for tasks in (1, 5)]


def test_every_claim_of_the_paper_has_scenarios():
  assert sorted(SCENARIOS) == list(range(len(claims.CLAIMS)))
  assert {c.figure for c in claims.CLAIMS} == set(verdicts.PAPER_TASKS)


@pytest.mark.parametrize('index, verdict, seeds, tasks', CASES)
def test_claim_verdict_on_synthetic_curves(index, verdict, seeds, tasks):
  data = SCENARIOS[index][verdict](seeds, tasks)
  got = _judge(index, data)
  assert got.verdict == verdict, (claims.CLAIMS[index].words, got)
  if verdict != verdicts.NOT_ENOUGH_DATA:
    assert got.tasks == len({env for env, _ in data.curves})
    assert got.paper_tasks == verdicts.PAPER_TASKS[data.name]
    assert got.numbers


def test_counts_of_tasks():
  assert verdicts.every([verdicts.YES] * 3) == verdicts.HOLDS
  assert verdicts.every([verdicts.YES, verdicts.OPEN]) == verdicts.INCONCLUSIVE
  assert verdicts.every([verdicts.YES, verdicts.NO]) == verdicts.CONTRADICTED
  assert verdicts.most([verdicts.YES, verdicts.YES, verdicts.NO]) == verdicts.HOLDS
  # 2 of 4 is not a majority; with one task open it still could become 3 of 4.
  yes, no, open_ = verdicts.YES, verdicts.NO, verdicts.OPEN
  assert verdicts.most([yes, yes, no, no]) == verdicts.CONTRADICTED
  assert verdicts.most([yes, yes, no, open_]) == verdicts.INCONCLUSIVE
  assert verdicts.most([verdicts.OPEN]) == verdicts.INCONCLUSIVE


def test_scope_names_the_papers_task_count():
  got = _judge(0, SCENARIOS[0][verdicts.HOLDS](3, 1))
  assert got.scope == "on 1 of the figure's 5 tasks"
  assert any('⚠' in line for line in got.numbers)  # 3 seeds: marked unreliable
  got = _judge(0, SCENARIOS[0][verdicts.HOLDS](10, 5))
  assert not any('⚠' in line for line in got.numbers)


def test_paper_names():
  assert verdicts.paper_name('piekd') == 'SAC-PIEKD'
  assert verdicts.paper_name('piekd (ensemble_size=2)') == 'SAC-PIEKD (K=2)'
  assert verdicts.paper_name('piekd (distill_interval=1000)') == 'SAC-PIEKD (I=1000)'
  assert verdicts.paper_name('ensemble_sac [num_seeds=2]') == 'Ensemble-SAC [num_seeds=2]'


def test_docs_hold_the_claims_table_of_the_code():
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs',
                      'REPORT.md')
  with open(path, encoding='utf-8') as f:
    text = f.read()
  assert '\n'.join(claims.table()) in text
