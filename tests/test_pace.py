"""The progress line's time left (piekd_mjx/pace.py): each kind of work at its own pace."""

import dataclasses

import pytest

from piekd_mjx import pace as pace_lib
from piekd_mjx.config import Config

# 30k steps, warm-up 10k, evaluations every 10k, phases every 5k after the warm-up.
CONFIG = Config(total_steps=30_000, warmup_steps=10_000, eval_every=10_000)
PIEKD = dataclasses.replace(CONFIG, variant='piekd', ensemble_size=3, share='distill')


def test_the_rate_is_the_latest_chunks_and_warm_up_does_not_predict_learning():
  pace = pace_lib.Pace()
  assert pace.chunk(1000, False, 2.0) == 500.0
  # In warm-up, with learning not timed yet: unknown, not warm-up's speed.
  assert pace.time_left([CONFIG], 1000) is None
  pace.evaluation_wait = 3.0
  assert pace.chunk(1000, True, 10.0) == 100.0
  # 9k warm-up steps at 2 ms, 20k learning steps at 10 ms, 3 evaluations of 3 s.
  assert pace.time_left([CONFIG], 1000) == pytest.approx(9000 * 0.002 + 20_000 * 0.01 + 9.0)
  # At 25k: 5k learning steps and the last evaluation.
  assert pace.time_left([CONFIG], 25_000) == pytest.approx(5000 * 0.01 + 3.0)
  assert pace.time_left([CONFIG], 30_000) == 0


def test_phases_count_once_timed():
  pace = pace_lib.Pace(warmup=0.001, learning=0.01, evaluation_wait=2.0)
  # Phases after 15k, 20k and 25k remain and none was timed yet.
  assert pace.time_left([PIEKD], 12_000) is None
  pace.phase = 30.0
  assert pace.time_left([PIEKD], 12_000) == pytest.approx(18_000 * 0.01 + 3 * 30.0 + 2 * 2.0)
  # A run without phases needs no phase timing.
  assert pace.time_left([CONFIG], 12_000) == pytest.approx(18_000 * 0.01 + 2 * 2.0)
