"""The training program: no retracing, the phase schedule, every variant end to end,
and learning on the small task."""

import io
import json

import numpy as np
import pytest

from piekd_mjx import config as config_lib
from piekd_mjx import run as run_lib
from piekd_mjx import train as train_lib

# One small setting shared by these tests, so compiled programs are shared too.
SMALL = dict(env='inverted_pendulum', hidden_sizes=(64, 64), batch_size=128,
             actor_lr=1e-3, critic_lr=1e-3, init_alpha=0.05, warmup_steps=1000,
             replay_capacity=20_000, eval_episodes=5, log_every=5000)


def small_config(**overrides) -> config_lib.Config:
  values = {**SMALL, **overrides}
  config = config_lib.apply_variant(config_lib.Config(**values), frozenset(values))
  config.validate()
  return config


def test_chunks_of_any_length_reuse_one_program(task_cache):
  config = small_config(hidden_sizes=(8, 8), batch_size=8, warmup_steps=8,
                        replay_capacity=64, num_seeds=2, total_steps=100)
  trainer = train_lib.make_trainer(config, task_cache('inverted_pendulum'))
  state = trainer.init()
  state, _ = trainer.collect(state, 8)
  state, _ = trainer.collect(state, 3)
  state, m1 = trainer.train(state, 5)
  state, m2 = trainer.train(state, 7)
  assert trainer.collect._cache_size() == 1  # pylint: disable=protected-access
  assert trainer.train._cache_size() == 1  # pylint: disable=protected-access
  assert int(state.step) == 23
  np.testing.assert_array_equal(state.replay.size, [23, 23])
  assert m1['sac/critic_loss'].shape == (2, 1)
  # The two seeds are different runs.
  assert not np.allclose(state.env_state.obs[0], state.env_state.obs[1])


def test_phase_schedule():
  config = small_config(variant='piekd', total_steps=30_000, distill_interval=5000)
  assert train_lib.phase_steps(config) == [15_000, 20_000, 25_000, 30_000]
  config = small_config(variant='piekd', total_steps=4000, distill_interval=1000,
                        first_distill_step=2000)
  assert train_lib.phase_steps(config) == [2000, 3000, 4000]
  assert train_lib.phase_steps(small_config(variant='ensemble_sac')) == []
  config = small_config(total_steps=2500, eval_every=1000)
  assert train_lib.eval_steps(config) == [1000, 2000, 2500]


@pytest.mark.parametrize('variant', sorted(config_lib.VARIANTS))
def test_variant_runs_end_to_end(variant, tmp_path, task_cache):
  config = small_config(variant=variant, num_seeds=2, total_steps=1600, eval_every=800,
                        distill_interval=300, first_distill_step=1200, log_every=400,
                        distill_data='sample', distill_sample_batches=2)
  trainer = train_lib.make_trainer(config, task_cache('inverted_pendulum'))
  records = run_lib.run(config, str(tmp_path), out=io.StringIO(), trainer=trainer)
  lines = (tmp_path / 'metrics.jsonl').read_text().splitlines()
  assert [json.loads(l)['step'] for l in lines] == [800, 1600]
  last = records[-1]
  k = config.ensemble_size
  assert np.shape(last['eval/returns']) == (2, k)
  assert np.all(np.isfinite(last['eval/returns']))
  num_phases = len(train_lib.phase_steps(config))
  assert last['distill/num_phases'] == num_phases == (2 if config.share != 'none' else 0)
  if config.share in ('distill', 'hardcopy'):
    assert last['distill/last_phase_step'] == 1500
    assert np.shape(last['distill/teacher']) == (2,)
  assert np.sum(last['ensemble/num_selected']) >= np.sum(last['ensemble/num_episodes'])
  assert json.loads((tmp_path / 'config.json').read_text())['variant'] == variant


def test_sac_solves_inverted_pendulum(tmp_path, task_cache):
  """Two seeds of SAC reach a mean evaluation return of at least 950."""
  config = small_config(num_seeds=2, total_steps=15_000, eval_every=15_000)
  trainer = train_lib.make_trainer(config, task_cache('inverted_pendulum'))
  records = run_lib.run(config, str(tmp_path), out=io.StringIO(), trainer=trainer)
  returns = np.asarray(records[-1]['eval/returns'])  # [S, K]
  assert returns.mean() >= 950.0, returns


@pytest.mark.slow
def test_piekd_solves_inverted_pendulum(tmp_path, task_cache):
  """PIEKD (K = 3, phases every 5,000 steps from step 5,000) still solves the task."""
  config = small_config(variant='piekd', num_seeds=2, total_steps=15_000, eval_every=15_000,
                        distill_interval=5000, first_distill_step=5000)
  trainer = train_lib.make_trainer(config, task_cache('inverted_pendulum'))
  records = run_lib.run(config, str(tmp_path), out=io.StringIO(), trainer=trainer)
  assert records[-1]['distill/num_phases'] == 3
  best = np.asarray(records[-1]['eval/return_best'])  # [S]
  assert best.mean() >= 950.0, records[-1]['eval/returns']
