"""When things happen (piekd_mjx/schedule.py), against the reference's loop written out.

The oracle replays pfnet-research/piekd's ``parallel_train_agent_batch``: each
iteration takes one environment step, calls the distillation callback with the step
count before its increment (a phase when ``t > replay_start_size and t % I == 0``),
increments it, and evaluates every ``eval_interval`` steps; the loop ends after the
evaluation of the last step, before the callback of a further iteration.
"""

import dataclasses

import pytest

from piekd_mjx import config as config_lib
from piekd_mjx import schedule


def make_config(**overrides) -> config_lib.Config:
  values = {**dict(variant='piekd', total_steps=30_000, warmup_steps=10_000,
                  batch_size=256), **overrides}
  config = config_lib.apply_variant(config_lib.Config(**values), frozenset(values))
  config.validate()
  return config


def reference_events(total_steps, warmup_steps, interval, eval_every):
  """(kind, t) in the order the reference does them; a phase of callback step t is
  listed as ('phase', t), the evaluation after step t as ('evaluate', t)."""
  done, t = [], 0
  while True:
    # One environment step and the members' updates; then the callback with t.
    if t > warmup_steps and t % interval == 0:
      done.append(('phase', t))
    t += 1
    if t % eval_every == 0 or t == total_steps:
      done.append(('evaluate', t))
    if t >= total_steps:
      return done


def ours(config):
  listed = []
  for event in schedule.events(config):
    listed += [(kind, event.step) for kind in ('evaluate', 'phase') if getattr(event, kind)]
  return listed


@pytest.mark.parametrize('interval', [1000, 2000, 3000, 5000, 7000, 100_000])
@pytest.mark.parametrize('warmup_steps', [10_000, 7500, 2500])
@pytest.mark.parametrize('eval_every', [10_000, 3000])
def test_phases_and_evaluations_follow_the_reference(interval, warmup_steps, eval_every):
  config = make_config(distill_interval=interval, warmup_steps=warmup_steps,
                       eval_every=eval_every)
  expected = reference_events(config.total_steps, warmup_steps, interval, eval_every)
  assert ours(config) == expected
  first = min([t for kind, t in expected if kind == 'phase'], default=None)
  if first is not None:  # the first phase follows I, not a fixed step
    assert first == (warmup_steps // interval + 1) * interval


@pytest.mark.parametrize('interval, first', [(5000, 15_000), (1000, 11_000), (3000, 12_000),
                                             (7000, 14_000)])
def test_first_phase_is_the_first_multiple_of_i_past_warmup(interval, first):
  phases = schedule.phase_steps(make_config(distill_interval=interval))
  assert phases[0] == first
  assert phases == list(range(first, 30_000, interval))


def test_no_phase_after_the_last_step_unless_the_run_goes_on():
  config = make_config(distill_interval=5000)
  assert schedule.phase_steps(config) == [15_000, 20_000, 25_000]
  last = schedule.events(config)[-1]
  assert (last.step, last.evaluate, last.phase, last.checkpoint, last.end) == (
      30_000, True, False, True, True)
  # Extended by --resume from that step: the skipped phase runs first, alone.
  extended = dataclasses.replace(config, total_steps=40_000)
  resumed = schedule.events(extended, start=30_000, phase_pending=True)
  assert resumed[0] == schedule.Event(step=30_000, phase=True)
  assert [e.step for e in resumed if e.phase] == [30_000, 35_000]
  # A checkpoint taken after its step's phase leaves nothing pending.
  assert schedule.events(extended, start=30_000)[0].step == 35_000
  assert schedule.events(config, start=30_000, phase_pending=True) == []


def test_order_within_a_step_and_the_fields_of_each_event():
  config = make_config(distill_interval=5000, eval_every=10_000, checkpoint_every=20_000)
  by_step = {e.step: e for e in schedule.events(config)}
  assert sorted(by_step) == [10_000, 15_000, 20_000, 25_000, 30_000]
  assert by_step[10_000] == schedule.Event(step=10_000, warmup_end=True, evaluate=True)
  assert by_step[20_000] == schedule.Event(step=20_000, evaluate=True, phase=True,
                                           checkpoint=True)
  assert by_step[15_000] == schedule.Event(step=15_000, phase=True)
  assert [f.name for f in dataclasses.fields(schedule.Event)][2:5] == [
      'evaluate', 'phase', 'checkpoint']


@pytest.mark.parametrize('variant, k, has', [
    ('vanilla_sac', 1, False), ('ensemble_sac', 3, False), ('piekd', 3, True),
    ('piekd', 1, False), ('piekd_hardcopy', 2, True), ('piekd_hardcopy', 1, False),
    ('piekd_random_teacher', 3, True), ('vanilla_sac_extra', 1, True),
    ('ensemble_sac_extra', 3, True)])
def test_which_runs_have_phases(variant, k, has):
  config = make_config(variant=variant, ensemble_size=k)
  assert schedule.has_phases(config) == has
  assert bool(schedule.phase_steps(config)) == has


def test_evaluation_and_checkpoint_steps():
  config = make_config(total_steps=2500, eval_every=1000, warmup_steps=500)
  assert schedule.eval_steps(config) == [1000, 2000, 2500]
  config = make_config(total_steps=3000, eval_every=500, warmup_steps=500,
                       checkpoint_every=500)
  assert schedule.checkpoint_steps(config) == [500, 1000, 1500, 2000, 2500, 3000]
  config = make_config(total_steps=2500, eval_every=700, warmup_steps=500,
                       checkpoint_every=1000)
  # Evaluations at 700, 1400, 2100, 2500: the first at or after 1000 and 2000, and the last.
  assert schedule.checkpoint_steps(config) == [1400, 2100, 2500]
  assert schedule.checkpoint_steps(dataclasses.replace(config, checkpoint_every=10**6)) == [
      2500]


def test_chunks_stop_at_the_end_of_warmup_and_at_every_event():
  config = make_config(total_steps=2600, warmup_steps=700, eval_every=1000,
                       distill_interval=600, log_every=400)
  steps, chunks = 0, []
  for event in schedule.events(config):
    for n, learn in schedule.chunks(steps, event.step, config.warmup_steps,
                                    config.log_every):
      chunks.append((steps, n, learn))
      steps += n
    assert steps == event.step
  assert steps == 2600
  assert all(n <= 400 for _, n, _ in chunks)
  assert all(learn == (start >= 700) for start, _, learn in chunks)
  assert all(start + n <= 700 or start >= 700 for start, n, _ in chunks)


def test_a_config_json_with_first_distill_step_reads_when_its_schedule_is_the_rule():
  values = dataclasses.asdict(make_config())
  assert config_lib.from_dict({**values, 'first_distill_step': 15_000}) == make_config()
  with pytest.raises(ValueError, match='first_distill_step=20000 .* first phase at step 15000'):
    config_lib.from_dict({**values, 'first_distill_step': 20_000})
  off = dataclasses.asdict(make_config(variant='ensemble_sac'))
  assert config_lib.from_dict({**off, 'first_distill_step': 1}) == make_config(
      variant='ensemble_sac')
