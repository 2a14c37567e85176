"""The paper's variants (docs/ALGORITHM.md §4) told apart at the trainer level: what each one's phase
does to the members of a trained state, and that every member of an ensemble learns.

The tests advance one trainer with ``collect`` and ``train`` chunks and call the phases
of the variants' trainers directly, so they hold whatever the host's schedule is. The
task is the physics-free ``stub`` (envs/stub.py): what a phase does is the subject.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from piekd_mjx import config as config_lib
from piekd_mjx import programs as programs_lib

# S = 2, K = 3, 8x8 networks, minibatches of 32, capacity 5000. Phases: 5 epochs x 2
# sampled minibatches.
SETTING = dict(env='stub', num_seeds=2, hidden_sizes=(8, 8), batch_size=32,
               replay_capacity=5000, warmup_steps=200, total_steps=3000,
               distill_data='sample', distill_sample_batches=2, distill_batch_size=32,
               distill_interval=1000)
S, M = SETTING['num_seeds'], config_lib.Config().recent_episodes
TRAIN_STEPS = 100
# The members' fields, and the ones a hard copy or a distillation phase may change.
FIELDS = ('actor_params', 'critic_params', 'target_critic_params', 'log_alpha',
          'actor_opt_state', 'critic_opt_state', 'alpha_opt_state')
NO_PHASE = ('vanilla_sac', 'ensemble_sac')

# The tests share the trainers and the trained state: one pytest-xdist worker.
pytestmark = pytest.mark.xdist_group('variants')


def make_config(variant: str, **overrides) -> config_lib.Config:
  values = {**SETTING, 'variant': variant, **overrides}
  config = config_lib.apply_variant(config_lib.Config(**values), frozenset(values))
  config.validate()
  return config


@pytest.fixture(scope='module')
def trainer_of(task_cache):
  """``get(variant, **overrides)``: that variant's trainer, built once per module."""
  trainers = {}

  def get(variant, **overrides):
    config = make_config(variant, **overrides)
    if config not in trainers:
      trainers[config] = programs_lib.make_trainer(config, task_cache('stub'))
    return trainers[config]

  return get


@pytest.fixture(scope='module')
def trained(trainer_of):
  """A host copy of the piekd trainer's state after warm-up and TRAIN_STEPS steps."""
  trainer = trainer_of('piekd')
  state, _ = trainer.collect(trainer.init(), SETTING['warmup_steps'])
  state, _ = trainer.train(state, TRAIN_STEPS)
  state = jax.tree.map(np.array, state)
  assert np.all(state.ensemble.num_episodes.sum(axis=1) > 0)  # a teacher in every seed
  return state


def on_device(state):
  """Fresh device copies of a host state (phases and chunks donate their input)."""
  return jax.tree.map(jnp.copy, state)


def member(tree, s, k):
  return jax.tree.map(lambda x: np.asarray(x)[s, k], tree)


def equal(a, b) -> bool:
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


def best_member(ensemble_state, s) -> int:
  """The reference's teacher: argmax_k R_k, R_k the mean of member k's last M returns,
  among the members that finished an episode."""
  returns, counts = np.asarray(ensemble_state.returns[s]), np.asarray(
      ensemble_state.num_episodes[s])
  recent = [returns[k, :min(n, M)].mean() if n else -np.inf for k, n in enumerate(counts)]
  return int(np.argmax(recent))


def with_returns(state, phase_index: int):
  """``state`` with made-up episode returns of every seed (seeded by the phase index):
  rings partly or wholly filled and a member without a finished episode now and then."""
  returns, counts = [], []
  for s in range(S):
    rng = np.random.default_rng(10 * phase_index + s)
    count = rng.integers(0, 2 * M, size=state.ensemble.returns.shape[1])
    count[rng.integers(len(count))] = M  # at least one member has R_k
    returns.append(rng.normal(size=(len(count), M)).astype(np.float32) * 100.0)
    counts.append(count.astype(np.int32))
  return state.replace(ensemble=state.ensemble.replace(
      returns=jnp.asarray(np.stack(returns)), num_episodes=jnp.asarray(np.stack(counts))))


def one_member(state):
  """The state of a K = 1 ensemble: member 0 of every seed of ``state``."""
  first = lambda x: x[:, :1]
  ens = state.ensemble
  return state.replace(members=jax.tree.map(first, state.members),
                       ensemble=ens.replace(acting=np.zeros_like(ens.acting),
                                            returns=first(ens.returns),
                                            num_episodes=first(ens.num_episodes),
                                            num_selected=first(ens.num_selected)))


def changed_fields(before, after, s, k) -> frozenset[str]:
  return frozenset(f for f in FIELDS if not equal(member(getattr(before, f), s, k),
                                                  member(getattr(after, f), s, k)))


def test_only_the_sharing_variants_have_a_phase(trainer_of):
  for variant in config_lib.VARIANTS:
    assert (trainer_of(variant).phase is None) == (variant in NO_PHASE), variant


def test_hardcopy_students_equal_the_teacher(trained, trainer_of):
  out, metrics = trainer_of('piekd_hardcopy').phase(on_device(trained))
  before, after = trained.members, out.members
  num_members = before.log_alpha.shape[1]
  for s in range(S):
    teacher = int(metrics['distill/teacher'][s])
    assert teacher == best_member(trained.ensemble, s)
    assert equal(member(after, s, teacher), member(before, s, teacher))
    for k in set(range(num_members)) - {teacher}:
      for field in ('actor_params', 'critic_params', 'actor_opt_state', 'critic_opt_state'):
        assert equal(member(getattr(after, field), s, k),
                     member(getattr(before, field), s, teacher)), field
      # Not copied: the target critics and the temperature, which differ from the
      # teacher's after training.
      for field in ('target_critic_params', 'log_alpha', 'alpha_opt_state'):
        own = member(getattr(before, field), s, k)
        assert equal(member(getattr(after, field), s, k), own), field
        assert not equal(own, member(getattr(before, field), s, teacher)), field


def test_distillation_moves_only_the_students_towards_the_teacher(trained, trainer_of):
  out, metrics = trainer_of('piekd').phase(on_device(trained))
  before, after = trained.members, out.members
  num_members = before.log_alpha.shape[1]
  np.testing.assert_array_equal(metrics['distill/num_updates'], [5 * 2] * S)
  for s in range(S):
    teacher = int(metrics['distill/teacher'][s])
    assert teacher == best_member(trained.ensemble, s)
    assert equal(member(after, s, teacher), member(before, s, teacher))  # bit-identical
    for k in set(range(num_members)) - {teacher}:
      # The networks move (the target critics by their Polyak step); the temperature
      # and the SAC optimiser states stay; and the student is no copy of the teacher.
      assert changed_fields(before, after, s, k) == {
          'actor_params', 'critic_params', 'target_critic_params'}
      assert not equal(member(after.actor_params, s, k),
                       member(before.actor_params, s, teacher))
  # Closer to the teacher, by the phase's own probe of every seed.
  for name in ('policy_kl', 'critic_mse'):
    after_loss, before_loss = metrics[f'distill/{name}_after'], metrics[f'distill/{name}_before']
    assert np.all(after_loss < before_loss), (name, after_loss, before_loss)


@pytest.mark.parametrize('extra_updates, fields', [
    ('policy_alpha', {'actor_params', 'log_alpha', 'actor_opt_state', 'alpha_opt_state'}),
    ('all', set(FIELDS)),
])
def test_extra_updates_change_every_member(extra_updates, fields, trained, trainer_of):
  for variant, state in (('ensemble_sac_extra', trained),
                         ('vanilla_sac_extra', one_member(trained))):
    out, metrics = trainer_of(variant, extra_updates=extra_updates).phase(on_device(state))
    np.testing.assert_array_equal(metrics['distill/teacher'], [-1] * S)  # no teacher
    np.testing.assert_array_equal(metrics['distill/num_updates'], [5 * 2] * S)
    for s in range(S):
      for k in range(state.members.log_alpha.shape[1]):
        assert changed_fields(state.members, out.members, s, k) == fields, (variant, s, k)


def run_phases(trainer, state, num_phases):
  """``num_phases`` phases of ``trainer`` from ``state``, each on made-up returns; the
  teachers [num_phases, S], the best members [num_phases, S] and each phase's members
  before and after it."""
  state = on_device(state)
  teachers, best, members = [], [], []
  for i in range(num_phases):
    state = with_returns(state, i)
    best.append([best_member(state.ensemble, s) for s in range(S)])
    before = jax.tree.map(np.array, state.members)
    state, metrics = trainer.phase(state)
    teachers.append(np.asarray(metrics['distill/teacher']))
    members.append((before, jax.tree.map(np.array, state.members)))
  return np.array(teachers), np.array(best), members


def test_best_teacher_is_argmax_and_a_random_teacher_is_not_always(trained, trainer_of):
  num_phases = 8
  teachers, best, _ = run_phases(trainer_of('piekd'), trained, num_phases)
  np.testing.assert_array_equal(teachers, best)
  assert len(np.unique(best)) == 3  # every member is the best now and then
  teachers, best, members = run_phases(trainer_of('piekd_random_teacher'), trained,
                                       num_phases)
  assert np.any(teachers != best), teachers
  assert len(np.unique(teachers)) == 3, teachers
  for i, (before, after) in enumerate(members):  # and it is the phase's teacher
    for s in range(S):
      assert equal(member(after, s, teachers[i, s]), member(before, s, teachers[i, s]))


def test_every_member_learns_on_every_step_whether_or_not_it_acted(trained, trainer_of):
  # One step: one member of each seed acts, every member does its SAC update.
  acting = trained.ensemble.acting  # [S]
  out, metrics = trainer_of('piekd').train(on_device(trained), 1)
  np.testing.assert_array_equal(out.replay.size, trained.replay.size + 1)
  assert np.all(np.isfinite(metrics['sac/critic_loss']))
  for s in range(S):
    for k in range(trained.members.log_alpha.shape[1]):
      assert changed_fields(trained.members, out.members, s, k) == set(FIELDS), (
          s, k, 'acted' if k == acting[s] else 'did not act')


def phase_signature(trainer, state):
  """What a variant's phase does over four phases on made-up returns: the ensemble
  size, how the teacher is chosen ('best', 'random' or 'none'), the fields it changes
  in the other members, whether the teacher changes, and whether the students come out
  as copies of the teacher's actor and critics."""
  num_members = state.members.log_alpha.shape[1]
  if trainer.phase is None:
    return (num_members, 'no phase')
  teachers, best, members = run_phases(trainer, state, 4)
  if np.all(teachers == -1):
    rule = 'none'
  else:
    rule = 'best' if np.array_equal(teachers, best) else 'random'
  changed, teacher_changed, copies = set(), False, True
  for i, (before, after) in enumerate(members):
    for s in range(S):
      teacher = teachers[i, s]
      for k in range(num_members):
        fields = changed_fields(before, after, s, k)
        if k == teacher:
          teacher_changed |= bool(fields)
          continue
        changed |= fields
        copies &= teacher >= 0 and all(
            equal(member(getattr(after, f), s, k), member(getattr(after, f), s, teacher))
            for f in ('actor_params', 'critic_params'))
  return (num_members, rule, frozenset(changed), teacher_changed, copies)


DISTILLED = frozenset({'actor_params', 'critic_params', 'target_critic_params'})
COPIED = frozenset({'actor_params', 'critic_params', 'actor_opt_state', 'critic_opt_state'})
EXTRA = frozenset({'actor_params', 'log_alpha', 'actor_opt_state', 'alpha_opt_state'})
EXPECTED_SIGNATURES = {
    'vanilla_sac': (1, 'no phase'),
    'ensemble_sac': (3, 'no phase'),
    'piekd': (3, 'best', DISTILLED, False, False),
    'piekd_random_teacher': (3, 'random', DISTILLED, False, False),
    'piekd_hardcopy': (3, 'best', COPIED, False, True),
    'ensemble_sac_extra': (3, 'none', EXTRA, False, False),
    'vanilla_sac_extra': (1, 'none', EXTRA, False, False),
}


def test_each_variant_differs_from_the_others_in_what_its_phase_does(trained, trainer_of):
  assert set(EXPECTED_SIGNATURES) == set(config_lib.VARIANTS)
  assert len(set(EXPECTED_SIGNATURES.values())) == len(EXPECTED_SIGNATURES)
  for variant in config_lib.VARIANTS:
    trainer = trainer_of(variant)
    state = trained if trainer.config.ensemble_size == 3 else one_member(trained)
    assert phase_signature(trainer, state) == EXPECTED_SIGNATURES[variant], variant
