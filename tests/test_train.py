"""The training program: no retracing, no copy of the replay buffer, seeds batched
or not, and learning on the small task (tests/test_variants.py tells the variants
apart)."""

import io
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from piekd_mjx import config as config_lib
from piekd_mjx import keys as keys_lib
from piekd_mjx import lanes as lanes_lib
from piekd_mjx import programs as programs_lib
from piekd_mjx import run as run_lib
from piekd_mjx import train as train_lib

# One small setting shared by these tests, so compiled programs are shared too.
SMALL = dict(env='inverted_pendulum', hidden_sizes=(64, 64), batch_size=128,
             actor_lr=1e-3, critic_lr=1e-3, init_alpha=0.05, warmup_steps=1000,
             replay_capacity=20_000, eval_episodes=5, log_every=5000)


# A tinier one for the tests of the program's structure, on the physics-free task (the
# physics is not their subject); the capacity is a size no other array of the program
# has, so the buffer can be found in the compiled program.
TINY = dict(env='stub', hidden_sizes=(8, 8), batch_size=8, warmup_steps=8, replay_capacity=4099,
            total_steps=100)


def small_config(**overrides) -> config_lib.Config:
  values = {**SMALL, **overrides}
  config = config_lib.apply_variant(config_lib.Config(**values), frozenset(values))
  config.validate()
  return config


@pytest.fixture(scope='session')
def tiny_trainer(task_cache):
  """``get(num_seeds, seed_batch)``: the TINY trainer of that shape, built once for
  these tests (tracing a trainer's programs costs seconds, whatever its sizes)."""
  trainers = {}

  def get(num_seeds, seed_batch):
    if (num_seeds, seed_batch) not in trainers:
      config = small_config(**TINY, num_seeds=num_seeds, seed_batch=seed_batch)
      trainers[num_seeds, seed_batch] = programs_lib.make_trainer(
          config, task_cache(config.env))
    return trainers[num_seeds, seed_batch]

  return get


# The tests of the TINY trainers run in one pytest-xdist worker, which builds them once.
tiny = pytest.mark.xdist_group('tiny_trainers')


@tiny
def test_chunks_of_any_length_reuse_one_program(tiny_trainer):
  trainer = tiny_trainer(2, 1)
  state = trainer.init()
  initial = jax.tree.map(np.asarray, state.members)
  state, _ = trainer.collect(state, 8)
  state, m0 = trainer.collect(state, 3)
  # Warm-up steps leave the members alone and report no losses.
  for a, b in zip(jax.tree.leaves(state.members), jax.tree.leaves(initial)):
    np.testing.assert_array_equal(a, b)
  assert not np.any(m0['sac/critic_loss'])
  state, m1 = trainer.train(state, 5)
  assert not np.array_equal(state.members.log_alpha, initial.log_alpha)
  state, m2 = trainer.train(state, 7)
  # Warm-up and learning chunks of every length: one compiled program.
  assert trainer.chunk.func._cache_size() == 1  # pylint: disable=protected-access
  assert int(state.step) == 23
  np.testing.assert_array_equal(state.replay.size, [23, 23])
  assert m1['sac/critic_loss'].shape == (2, 1)
  # The two seeds are different runs.
  assert not np.allclose(state.env_state.obs[0], state.env_state.obs[1])


@tiny
@pytest.mark.parametrize('num_seeds, seed_batch', [
    pytest.param(1, 0, marks=pytest.mark.slow), (2, 2)])  # one lane: the same code, squeezed
def test_static_control_flow_steps_as_the_dynamic_bit_for_bit(num_seeds, seed_batch,
                                                             tiny_trainer, task_cache):
  # Static control flow (an accelerator's: loops of static trip count, restarts by
  # select, warm-up without updates) is the same computation, compiled otherwise: every
  # integer leaf of the state and metrics equal, every float equal to float32 rounding
  # (XLA fuses the updates' reductions differently), with episodes ending (and
  # restarting) along the way; warm-up chunks are bit-equal.
  dynamic = tiny_trainer(num_seeds, seed_batch)
  static = programs_lib.make_trainer(
      small_config(**TINY, num_seeds=num_seeds, seed_batch=seed_batch,
                   control_flow='static'), task_cache('stub'))
  assert train_lib.static_control(static.config)
  assert not train_lib.static_control(dynamic.config)  # 'auto' on a CPU
  chunks = [(6, False), (6, False), (8, True), (8, True)]
  finals = []
  for trainer in (dynamic, static):
    state, records = trainer.init(), []
    for num_steps, learn in chunks:
      state, metrics = trainer.chunk(state, num_steps, learn)
      records.append(jax.tree.map(np.asarray, metrics))
    finals.append((jax.tree.map(np.asarray, state), records))
  (want, want_records), (got, got_records) = finals
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for g, w in zip(jax.tree.leaves((got, got_records)), jax.tree.leaves((want, want_records))):
    if np.issubdtype(w.dtype, np.floating):
      np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    else:
      np.testing.assert_array_equal(g, w)
  for g, w in zip(jax.tree.leaves(got_records[:2]), jax.tree.leaves(want_records[:2])):
    np.testing.assert_array_equal(g, w)
  assert int(got.step) == 28 and np.all(got.ensemble.num_episodes.sum(-1) >= 2)
  # One program per (length, learn) pair, compiled once each.
  assert sorted(static.chunk.func._programs) == [  # pylint: disable=protected-access
      (6, False), (8, True)]


def test_vmap_or_squeeze_equals_vmap():
  def fn(tree, x):
    return {'sum': tree['a'] @ tree['b'] + x, 'max': jnp.max(tree['a'])}, x * 2

  rng = np.random.default_rng(0)
  tree = {'a': jnp.asarray(rng.normal(size=(1, 3, 4)), jnp.float32),
          'b': jnp.asarray(rng.normal(size=(1, 4, 2)), jnp.float32)}
  x = jnp.asarray(rng.normal(size=(1, 3, 2)), jnp.float32)
  got = lanes_lib.over_lanes(fn, 1)(tree, x)
  want = jax.vmap(fn)(tree, x)
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert g.shape == w.shape
    np.testing.assert_allclose(g, w, rtol=1e-6)


@tiny
@pytest.mark.parametrize('num_seeds, seed_batch', [(1, 0), (2, 1), (2, 2)])
def test_train_step_never_copies_the_replay_buffer(num_seeds, seed_batch, tiny_trainer):
  # A copy of the [S, C, W] buffer in the loop makes every step cost O(C) (XLA can fuse
  # the insert into the sample's gather when seeds are squeezed). With
  # batches of seeds (seed_batch=1 for S = 2) a batch's slice [1, C, W] is read and
  # written back once per chunk, but the whole buffer is never copied.
  capacity = TINY['replay_capacity']
  trainer = tiny_trainer(num_seeds, seed_batch)
  state = trainer.init()
  text = trainer.chunk.func.lower(state, 5, True, settings=trainer.settings).compile(
  ).as_text()  # collect and train
  buffer_shape = f'f32[{num_seeds},{capacity},'
  copies = [line for line in text.splitlines()
            if buffer_shape in line and re.search(r'= \S+ copy\(', line)]
  assert not copies, copies[:3]
  assert buffer_shape in text


@tiny
def test_seed_trajectory_does_not_depend_on_how_seeds_are_batched(tiny_trainer):
  # Seed s of a run is fold_in(seed, s) whatever S is. S = 1 runs squeezed (no vmap);
  # S = 2 runs its seeds one after another through each chunk (seed_batch=1, the CPU's
  # default) or both vmapped (seed_batch=2, an accelerator's). Seed 0 must follow the
  # same trajectory in all three, and so must seed 1 in the two runs of S = 2.
  states = []
  for num_seeds, batch in ((1, 0), (2, 1), (2, 2)):
    trainer = tiny_trainer(num_seeds, batch)
    state = trainer.init()
    state, _ = trainer.collect(state, 40)
    state, _ = trainer.train(state, 20)
    assert int(state.step) == 60
    states.append(jax.tree.map(np.asarray,
                               (state.members, state.replay, state.env_state.obs)))
  np.testing.assert_array_equal(states[1][1].size, [60, 60])
  for seeds in ([0], [0, 1]):
    runs = [s for s in states if len(s[2]) >= len(seeds)]
    for other in runs[1:]:
      for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(other)):
        np.testing.assert_allclose(a[seeds], b[seeds], rtol=1e-4, atol=1e-5)


@tiny
def test_runs_that_differ_only_in_seed_share_their_programs(tiny_trainer):
  # The base key is an argument of init and evaluate, so a sweep over --seed compiles
  # each program once; the runs still start from different states.
  trainers = [tiny_trainer(1, 0),
              programs_lib.make_trainer(small_config(**TINY, num_seeds=1, seed=7),
                                     tiny_trainer(1, 0).task)]
  states = [trainer.init() for trainer in trainers]
  assert not np.array_equal(states[0].key, states[1].key)
  assert trainers[0].chunk.func is trainers[1].chunk.func
  texts = [t.init.func.lower(*t.init.args).as_text() for t in trainers]
  assert texts[0] == texts[1]
  keys = {keys_lib.evaluation_key(t.config) for t in trainers}
  assert len(keys) == 1
  program = programs_lib._evaluation_program(  # pylint: disable=protected-access
      keys.pop(), trainers[0].task)
  texts = [program.lower(jax.random.PRNGKey(t.config.seed), *train_lib.evaluation_inputs(s)
                         ).as_text() for t, s in zip(trainers, states)]
  assert texts[0] == texts[1]


# The SAC test compiles programs that no other test shares: one worker runs it.
small_vanilla = pytest.mark.xdist_group('small_vanilla')


@small_vanilla
def test_sac_solves_inverted_pendulum(tmp_path, task_cache):
  """Two seeds of SAC reach a mean evaluation return of at least 950 within 25,000
  steps, at one of the evaluations every 2,500 steps (SAC on this task can dip for a
  while after solving it, so one evaluation at the end is a coin toss on the seed).
  The physics is MuJoCo C's (--solver=mujoco_c), so that this is also the whole run of
  that solver: its callback batched over the seeds, in training and in the evaluations
  beside it on another thread."""
  config = small_config(num_seeds=2, total_steps=25_000, eval_every=2500, solver='mujoco_c')
  trainer = programs_lib.make_trainer(config, task_cache('inverted_pendulum', 'mujoco_c'))
  records = run_lib.run(config, str(tmp_path), out=io.StringIO(), trainer=trainer)
  means = [np.mean(r['eval/returns']) for r in records]  # over seeds and members
  assert [r['step'] for r in records] == list(range(2500, 25_001, 2500))
  assert max(means) >= 950.0, means


@pytest.mark.slow
def test_piekd_solves_inverted_pendulum(tmp_path, task_cache):
  """PIEKD (K = 3, phases every 5,000 steps past the warm-up) still solves the task in
  the SAC test's budget: the best member of each seed, averaged over the seeds,
  reaches 950 at one of the evaluations every 2,500 steps."""
  config = small_config(variant='piekd', num_seeds=2, total_steps=25_000, eval_every=2500,
                        distill_interval=5000)
  trainer = programs_lib.make_trainer(config, task_cache('inverted_pendulum'))
  records = run_lib.run(config, str(tmp_path), out=io.StringIO(), trainer=trainer)
  assert records[-1]['distill/num_phases'] == 4  # 5k-20k; none after the last step
  best = [np.mean(r['eval/return_best']) for r in records]  # mean over seeds
  assert max(best) >= 950.0, best
