"""Tests of the configuration and the paper's variants (piekd_mjx/config.py)."""

import dataclasses
import json
import re

import pytest

from piekd_mjx import config as config_lib
from piekd_mjx import config_flags
from piekd_mjx.config import Config


def test_defaults_match_the_spec():
  c = Config()
  assert (c.replay_capacity, c.batch_size, c.warmup_steps) == (1_000_000, 256, 10_000)
  assert c.hidden_sizes == (256, 256)
  assert (c.network_init, c.policy_output_scale) == ('glorot_uniform', 1.0)
  assert (c.actor_lr, c.critic_lr, c.alpha_lr) == (3e-4, 3e-4, 3e-4)
  assert (c.discount, c.tau, c.init_alpha) == (0.99, 0.005, 1.0)
  assert (c.log_std_min, c.log_std_max) == (-20.0, 2.0)
  assert c.target_entropy(6) == -6.0
  assert (c.updates_per_step, c.episode_length, c.eval_episodes) == (1, 1000, 20)
  assert (c.recent_episodes, c.distill_interval) == (5, 5000)
  assert (c.distill_epochs, c.distill_batch_size, c.distill_sample_batches) == (5, 256, 20)
  assert c.distill_lr == 1e-3
  assert (c.share, c.teacher, c.distill_data, c.extra_updates) == (
      'none', 'best', 'full', 'policy_alpha')
  assert (c.variant, c.ensemble_size, c.solver, c.matmul_precision) == (
      'vanilla_sac', 1, 'faithful', 'float32')
  c.validate()


def test_every_field_has_help():
  for field in dataclasses.fields(Config):
    assert field.metadata.get('help'), field.name


def test_config_is_frozen():
  with pytest.raises(dataclasses.FrozenInstanceError):
    Config().seed = 1  # type: ignore[misc]


@pytest.mark.parametrize('changes, flag', [
    ({'batch_size': 0}, '--batch_size'),
    ({'ensemble_size': -1}, '--ensemble_size'),
    ({'distill_sample_batches': 0}, '--distill_sample_batches'),
    ({'num_seeds': 1.5}, '--num_seeds'),
    ({'warmup_steps': 100}, '--warmup_steps'),  # below batch_size 256
    ({'warmup_steps': 40_000}, '--warmup_steps'),  # above total_steps 30000
    ({'num_seeds': 5, 'seed_batch': 2}, '--seed_batch'),  # not a divisor
    ({'seed_batch': -1}, '--seed_batch'),
    ({'share': 'copy'}, '--share'),
    ({'teacher': 'worst'}, '--teacher'),
    ({'variant': 'ppo'}, '--variant'),
    ({'matmul_precision': 'float16'}, '--matmul_precision'),
    ({'discount': 0.0}, '--discount'),
    ({'discount': 1.5}, '--discount'),
    ({'tau': 0.0}, '--tau'),
    ({'actor_lr': 0.0}, '--actor_lr'),
    ({'distill_lr': -1e-3}, '--distill_lr'),
    ({'hidden_sizes': ()}, '--hidden_sizes'),
    ({'hidden_sizes': (8, 0)}, '--hidden_sizes'),
    ({'checkpoint_every': 0}, '--checkpoint_every'),
    ({'keep_checkpoints': -2}, '--keep_checkpoints'),
    ({'replay_capacity': 2**31}, '--replay_capacity'),
    ({'critic_lr': float('inf')}, '--critic_lr'),
    ({'network_init': 'he_normal'}, '--network_init'),
    ({'policy_output_scale': 0.0}, '--policy_output_scale'),
])
def test_validate_names_the_flag(changes, flag):
  config = dataclasses.replace(Config(), **changes)
  with pytest.raises(ValueError, match=flag) as error:
    config.validate()
  assert repr(next(iter(changes.values()))) in str(error.value)


def test_discount_one_is_valid():
  dataclasses.replace(Config(), discount=1.0).validate()


@pytest.mark.parametrize('variant, k, share, teacher', [
    ('vanilla_sac', 1, 'none', 'best'),
    ('ensemble_sac', 3, 'none', 'best'),
    ('piekd', 3, 'distill', 'best'),
    ('vanilla_sac_extra', 1, 'extra', 'best'),
    ('ensemble_sac_extra', 3, 'extra', 'best'),
    ('piekd_hardcopy', 3, 'hardcopy', 'best'),
    ('piekd_random_teacher', 3, 'distill', 'random'),
])
def test_variants(variant, k, share, teacher):
  config = config_lib.apply_variant(Config(variant=variant))
  assert (config.ensemble_size, config.share, config.teacher) == (k, share, teacher)
  assert config.variant == variant
  config.validate()


def test_variants_cover_the_spec():
  assert set(config_lib.VARIANTS) == {
      'vanilla_sac', 'ensemble_sac', 'piekd', 'vanilla_sac_extra', 'ensemble_sac_extra',
      'piekd_hardcopy', 'piekd_random_teacher'}


def test_apply_variant_keeps_explicit_fields():
  config = Config(variant='piekd', ensemble_size=5, distill_interval=1000)
  varied = config_lib.apply_variant(config, explicit={'ensemble_size', 'distill_interval'})
  assert (varied.ensemble_size, varied.share, varied.distill_interval) == (5, 'distill', 1000)
  # Without being marked explicit, the variant's value wins.
  assert config_lib.apply_variant(config).ensemble_size == 3


def test_apply_variant_keeps_an_explicit_default_value():
  # --variant=ensemble_sac --ensemble_size=1: the user's 1 wins though it is the default.
  config = Config(variant='ensemble_sac', ensemble_size=1)
  assert config_lib.apply_variant(config, explicit=frozenset({'ensemble_size'})
                                  ).ensemble_size == 1


def test_apply_variant_unknown_names():
  with pytest.raises(ValueError, match='piekd_hardcopy'):
    config_lib.apply_variant(Config(variant='nope'))
  with pytest.raises(ValueError, match='ensemble_sise'):
    config_lib.apply_variant(Config(), explicit={'ensemble_sise'})


def test_from_dict_round_trips_and_fills_new_fields():
  config = config_lib.apply_variant(Config(variant='piekd', hidden_sizes=(8, 8)))
  values = json.loads(json.dumps(dataclasses.asdict(config)))
  assert config_lib.from_dict(values) == config
  del values['keep_checkpoints']  # a run from before the field existed
  assert config_lib.from_dict(values).keep_checkpoints == Config().keep_checkpoints
  # Runs from before network_init existed took flax's default initialiser.
  del values['network_init']
  assert config_lib.from_dict(values).network_init == 'lecun_normal'
  with pytest.raises(ValueError, match='no_such_field'):
    config_lib.from_dict({**values, 'no_such_field': 1})


def test_check_resumable():
  run = Config(total_steps=20_000)
  config_lib.check_resumable(run, dataclasses.replace(
      run, total_steps=50_000, eval_every=5000, eval_episodes=5, log_every=100,
      checkpoint_every=5000, keep_checkpoints=1, out_dir='elsewhere'))
  for name, value in [('seed', 1), ('hidden_sizes', (64, 64)), ('variant', 'piekd'),
                      ('replay_capacity', 10), ('warmup_steps', 5000), ('solver', 'fast')]:
    expected = '^' + re.escape(f'--{name}={value!r} differs from the run')
    with pytest.raises(ValueError, match=expected):
      config_lib.check_resumable(run, dataclasses.replace(run, **{name: value}))


def _variant(variant, **changes):
  config = config_lib.apply_variant(config_lib.Config(variant=variant, **changes),
                                    frozenset(changes))
  config.validate()
  return config


@pytest.mark.parametrize('variant, changes, flags', [
    ('vanilla_sac', dict(teacher='random'), ['--teacher']),
    ('ensemble_sac', dict(distill_interval=1000, distill_lr=0.01), ['--distill_interval',
                                                                   '--distill_lr']),
    ('piekd', dict(extra_updates='all'), ['--extra_updates']),
    ('piekd', dict(share='none'), ['--share']),
    ('piekd', dict(ensemble_size=1), ['--share']),
    ('piekd', dict(ensemble_size=1, distill_epochs=2), ['--distill_epochs', '--share']),
    ('piekd_hardcopy', dict(distill_lr=0.01, distill_epochs=3), ['--distill_epochs',
                                                                 '--distill_lr']),
    ('ensemble_sac_extra', dict(teacher='random', distill_lr=0.01), ['--teacher',
                                                                     '--distill_lr']),
    ('piekd', dict(distill_sample_batches=7), ['--distill_sample_batches']),
])
def test_flags_the_variant_ignores_are_named(variant, changes, flags):
  lines = config_lib.ignored_flags(_variant(variant, **changes))
  assert sorted(line.split('=')[0] for line in lines) == sorted(flags), lines
  assert all(' is ignored: ' in line or ' does nothing' in line or ' replaces ' in line
             for line in lines)


@pytest.mark.parametrize('variant, changes', [
    ('piekd', dict(teacher='random', distill_interval=1000, ensemble_size=5)),
    ('piekd_random_teacher', {}),
    ('piekd', dict(distill_data='sample', distill_sample_batches=7)),
    ('vanilla_sac_extra', dict(extra_updates='all', distill_epochs=2)),
    ('vanilla_sac', dict(actor_lr=1e-3, ensemble_size=2)),
])
def test_flags_that_act_are_not_named(variant, changes):
  assert config_lib.ignored_flags(_variant(variant, **changes)) == []


def test_flag_files_name_files_relative_to_their_own_folder(tmp_path, monkeypatch):
  figures = tmp_path / 'figures'
  figures.mkdir()
  (figures / 'protocol.cfg').write_text('# the protocol\n--num_seeds=5\n\n')
  (figures / 'fig.cfg').write_text('--flagfile=protocol.cfg\n--figure_file=other.cfg\n'
                                   '--figure_file=missing.cfg\n--env=hopper\n')
  (figures / 'other.cfg').write_text('--env=ant\n')
  monkeypatch.chdir(tmp_path)
  assert config_flags.expand_flagfiles(['--flagfile=figures/fig.cfg', '--seed=1']) == [
      '--num_seeds=5', f'--figure_file={figures / "other.cfg"}',
      f'--figure_file={tmp_path / "missing.cfg"}', '--env=hopper', '--seed=1']
  # A file that is not there is left for absl to report, as given.
  assert config_flags.expand_flagfiles(['--flagfile=none.cfg']) == ['--flagfile=none.cfg']
