"""Runs trained as the lanes of one program (programs.make_group_trainer, run.run_group):
each run's records equal those of the same run trained alone, bit for bit on a CPU,
for variants of every phase kind, SAC scalars and intervals grouped together; a group
resumes exactly; and the lane adapters (piekd_mjx/lanes.py) against their definitions.
"""

import io
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from piekd_mjx import config as config_lib
from piekd_mjx import keys as keys_lib
from piekd_mjx import lanes as lanes_lib
from piekd_mjx import programs as programs_lib
from piekd_mjx import records as records_lib
from piekd_mjx import run as run_lib

# These tests share the module's group trainer and reference runs: one xdist worker.
pytestmark = pytest.mark.xdist_group('lanes')

SETTING = dict(env='stub', num_seeds=1, ensemble_size=3, hidden_sizes=(8, 8),
               total_steps=1200, eval_every=400, warmup_steps=200, batch_size=16,
               log_every=200, eval_episodes=2, replay_capacity=2000, checkpoint_every=400,
               keep_checkpoints=1, distill_data='sample', distill_sample_batches=2,
               distill_batch_size=16, distill_interval=400)
# Every phase kind (distillation sampled and over the whole buffer, hard copy, extra
# updates), both teachers, no phases, other SAC scalars and another interval, and a run
# of two seeds: one group of 8 lanes.
ARMS = (
    dict(variant='piekd', num_seeds=2),
    dict(variant='piekd_random_teacher'),
    dict(variant='piekd_hardcopy', seed=1),
    dict(variant='ensemble_sac'),
    dict(variant='ensemble_sac_extra', extra_updates='all'),
    dict(variant='piekd', distill_interval=300, actor_lr=1e-3, critic_lr=5e-4,
         alpha_lr=1e-3, discount=0.95, tau=0.01, init_alpha=0.5, target_entropy_scale=0.5,
         distill_lr=3e-3, distill_sample_batches=3),
    dict(variant='piekd', distill_data='full', distill_epochs=1, seed=3),
)


def make_config(**overrides) -> config_lib.Config:
  values = {**SETTING, **overrides}
  config = config_lib.apply_variant(config_lib.Config(**values), frozenset(values))
  config.validate()
  return config


CONFIGS = [make_config(**arm) for arm in ARMS]


def records(run_dir) -> list[dict]:
  with open(os.path.join(run_dir, 'metrics.jsonl'), encoding='utf-8') as f:
    return [{k: v for k, v in json.loads(line).items()
             if k not in records_lib.WALL_CLOCK_FIELDS} for line in f]


@pytest.fixture(scope='module')
def group(task_cache):
  return programs_lib.make_group_trainer(CONFIGS, task_cache('stub'))


@pytest.fixture(scope='module')
def alone(tmp_path_factory, task_cache):
  """Each run trained alone: its run directory."""
  root = tmp_path_factory.mktemp('alone')
  dirs = []
  for r, config in enumerate(CONFIGS):
    dirs.append(str(root / f'run{r}'))
    run_lib.run(config, dirs[-1], out=io.StringIO(), err=io.StringIO(),
                trainer=programs_lib.make_trainer(config, task_cache('stub')))
  return dirs


def test_the_groups_lanes_are_the_runs_seeds(group):
  assert [s.stop - s.start for s in group.lanes] == [2, 1, 1, 1, 1, 1, 1]
  # Settings are data per lane: the changed arm's scalars are on its lane only.
  actor_lr = np.asarray(group.settings.sac.actor_lr)
  np.testing.assert_allclose(actor_lr, [3e-4] * 6 + [1e-3, 3e-4], rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(group.settings.phase.teacher),
                                [0, 0, 1, 0, 0, 0, 0, 0])
  # Seed s of a run starts from fold_in(PRNGKey(seed), s), as it does alone: runs of one
  # --seed start alike (the runs' own settings tell them apart).
  expected = [jax.random.fold_in(jax.random.PRNGKey(c.seed), s)
              for c in CONFIGS for s in range(c.num_seeds)]
  first = [jax.random.split(k, 4)[3] for k in expected]  # lane_init's next key
  np.testing.assert_array_equal(np.asarray(group.init().key), np.stack(first))


def test_a_grouped_run_equals_the_run_trained_alone(tmp_path, group, alone):
  dirs = [str(tmp_path / f'run{r}') for r in range(len(CONFIGS))]
  written = run_lib.run_group(CONFIGS, dirs, str(tmp_path / 'group'), out=io.StringIO(),
                              err=io.StringIO(), trainer=group)
  assert [len(w) for w in written] == [3] * len(CONFIGS)
  for r, (grouped, single) in enumerate(zip(dirs, alone)):
    got, want = records(grouped), records(single)
    assert [x['step'] for x in got] == [400, 800, 1200]
    assert got == want, f'run {r} ({CONFIGS[r].variant})'
  # The phases ran on their own lanes at their own steps: 2 at 400 and 800 for
  # interval 400, 3 at 300, 600 and 900 for interval 300 (none at the last step).
  phases = [x['distill/num_phases'] for x in records(dirs[5])]
  assert phases == [1, 2, 3] and records(dirs[0])[-1]['distill/num_phases'] == 2
  assert records(dirs[3])[-1]['distill/num_phases'] == 0
  assert records(dirs[5])[0]['distill/last_phase_step'] == 300
  # One checkpoint of the group, none in the runs' directories.
  assert os.listdir(tmp_path / 'group' / 'checkpoints') == ['1200']
  assert not os.path.exists(os.path.join(dirs[0], 'checkpoints'))
  with open(os.path.join(dirs[6], 'config.json'), encoding='utf-8') as f:
    assert config_lib.from_dict(json.load(f)) == CONFIGS[6]


def test_a_killed_group_resumes_exactly(tmp_path, group, alone):

  def chunk(state, num_steps, learn):
    if int(state.step) >= 600:
      raise RuntimeError('killed')
    return group.chunk(state, num_steps, learn)

  dirs = [str(tmp_path / f'run{r}') for r in range(len(CONFIGS))]
  with pytest.raises(RuntimeError, match='killed'):
    run_lib.run_group(CONFIGS, dirs, str(tmp_path / 'group'), out=io.StringIO(),
                      err=io.StringIO(), trainer=group._replace(chunk=chunk))
  assert records(dirs[0])[-1]['step'] == 400
  run_lib.run_group(CONFIGS, dirs, str(tmp_path / 'group'), out=io.StringIO(),
                    err=io.StringIO(), trainer=group, resume=True)
  for grouped, single in zip(dirs, alone):
    assert records(grouped) == records(single)


def test_a_phase_touches_only_its_lanes(group):
  state = group.init()
  state, _ = group.collect(state, 300)
  before = jax.tree.map(np.asarray, state)
  state, metrics = group.phase(state, [1, 5])
  after = jax.tree.map(np.asarray, state)
  assert metrics['distill/num_updates'].shape == (2,)
  np.testing.assert_array_equal(after.num_phases, [0, 1, 0, 0, 0, 1, 0, 0])
  for lane in range(8):
    same = [np.array_equal(a[lane], b[lane]) for a, b in zip(
        jax.tree.leaves(after.members), jax.tree.leaves(before.members))]
    assert all(same) == (lane not in (1, 5)), lane
  np.testing.assert_array_equal(after.replay.data, before.replay.data)


@pytest.mark.parametrize('batch', [1, 8])
def test_a_phase_program_copies_no_lane_array(batch, group):
  # Only the lanes of a phase are gathered and scattered back in place: no array with
  # the [L] axis (members, buffers) is copied whole, one lane (XLA inlines a loop of one
  # trip) or several, one after another (batch 1, the CPU's) or vmapped.
  state = group.init()
  for config, lanes in ((CONFIGS[0], [0]), (CONFIGS[0], [0, 1, 7]), (CONFIGS[2], [3]),
                        (CONFIGS[4], [5])):
    program = programs_lib._phase_program(  # pylint: disable=protected-access
        keys_lib.phase_key(config), group.task, batch)
    text = program.lower(state, group.settings, jnp.asarray(lanes, jnp.int32)).compile(
        ).as_text()
    copies = [line for line in text.splitlines()
              if re.search(r'= \S+\[8,[1-9][^\]]*\]\S* copy\(', line)]
    assert not copies, (config.variant, lanes, copies[:2])


def test_a_group_needs_one_program():
  with pytest.raises(ValueError, match='group_key'):
    programs_lib.make_group_trainer([CONFIGS[0], make_config(variant='piekd',
                                                          hidden_sizes=(4, 4))])
  with pytest.raises(ValueError, match='group_key'):
    programs_lib.make_group_trainer([CONFIGS[0], make_config(variant='piekd',
                                                          eval_every=300)])


def test_in_batches_and_at_lanes_follow_their_definitions():
  per_lane = {'x': jnp.arange(6.0), 'y': jnp.arange(12.0).reshape(6, 2)}
  shared = jnp.zeros((6,))

  def fn(part, shared, lanes):
    return ({'x': part['x'] * 2, 'y': part['y'] + lanes[:, None]},
            shared.at[lanes].add(1.0), part['x'] + 1)

  for batch in (1, 2, 3, 6):
    new, new_shared, out = lanes_lib.in_batches(fn, per_lane, shared, 6, batch)
    np.testing.assert_array_equal(new['x'], np.arange(6.0) * 2)
    np.testing.assert_array_equal(new['y'], np.arange(12.0).reshape(6, 2)
                                  + np.arange(6)[:, None])
    np.testing.assert_array_equal(new_shared, np.ones(6))
    np.testing.assert_array_equal(out, np.arange(6.0) + 1)

  def one(written, read, shared, lane):
    return written * 10 + read + shared[lane], written - 1

  lanes = jnp.asarray([4, 1], jnp.int32)
  for batch in (1, 2):
    written, out = lanes_lib.at_lanes(one, jnp.arange(6.0), jnp.ones(6), jnp.arange(6.0) * 100,
                                      lanes, batch)
    np.testing.assert_array_equal(written, [0, 111, 2, 3, 441, 5])
    np.testing.assert_array_equal(out, [3, 0])
