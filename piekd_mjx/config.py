"""Every hyperparameter of a PIEKD / SAC run, and the paper's variants.

The defaults are those of docs/ALGORITHM.md: §1 (one SAC member, after
Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications"), §2-3 (the
ensemble and intra-ensemble knowledge distillation, Hong et al., PIEKD, §4.2-4.4,
Algorithm 1, Eq. 1-2, with the reference implementation pfnet-research/piekd's defaults
where the paper is silent) and §4 (the baselines and ablations, paper §5.2-5.6).

``Config`` is one frozen dataclass; every field carries a one-line ``help`` in its
metadata so that the CLI can generate its absl flags from the fields in one loop.
A variant is a small function ``Config -> Config`` (``dataclasses.replace``), collected
in ``VARIANTS``; ``apply_variant`` applies ``config.variant`` while keeping the fields the
user set explicitly.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Collection, Mapping


def _field(default: Any, doc: str) -> Any:
  return dataclasses.field(default=default, metadata={'help': doc})


# The replay ring indexes its rows with int32.
MAX_REPLAY_CAPACITY = 2**31 - 1

# The fields a run may change when it is resumed (launch --resume): they change what
# is evaluated, logged, checkpointed or how far the run goes, never the training
# trajectory up to a given step. Every other field must equal the run's.
RESUMABLE_FIELDS = ('total_steps', 'eval_every', 'eval_episodes', 'eval_batch',
                    'eval_overlap', 'log_every', 'checkpoint_every', 'keep_checkpoints',
                    'out_dir')
# Where a run trains, not which run it is: outside a sweep's run identity (a run's
# name is the same on any machine), though a run resumes only where it started.
PLACEMENT_FIELDS = ('num_devices', 'control_flow')

# The valid values of the enum-valued string fields.
SOLVER_CHOICES = ('faithful', 'fast', 'capped', 'warp', 'mujoco_c')
NETWORK_INIT_CHOICES = ('glorot_uniform', 'lecun_normal')
MATMUL_PRECISION_CHOICES = ('float32', 'tensorfloat32', 'bfloat16')
SHARE_CHOICES = ('none', 'distill', 'hardcopy', 'extra')
TEACHER_CHOICES = ('best', 'random')
DISTILL_DATA_CHOICES = ('full', 'sample')
EXTRA_UPDATES_CHOICES = ('policy_alpha', 'all')
CONTROL_FLOW_CHOICES = ('auto', 'static', 'dynamic')


@dataclasses.dataclass(frozen=True)
class Config:
  """All hyperparameters of one run (every seed and member of it)."""

  # -- the run ---------------------------------------------------------------------------
  env: str = _field('inverted_pendulum', 'Task name (see piekd_mjx.envs.names()); stub: '
                    'a physics-free task for tests.')
  variant: str = _field('vanilla_sac', 'Paper variant (docs/ALGORITHM.md §4); one of VARIANTS.')
  num_seeds: int = _field(
      1, 'Number of independent seeds S trained in one program (see seed_batch).')
  seed: int = _field(0, 'Base PRNG seed; seed s of the run uses fold_in(seed, s).')
  total_steps: int = _field(
      30_000, 'Environment steps per seed (the default suits inverted_pendulum on a CPU; '
      'the paper runs 1,000,000).')
  eval_every: int = _field(10_000, 'Environment steps between evaluations.')
  eval_episodes: int = _field(20, 'Deterministic evaluation episodes per member.')
  out_dir: str = _field(
      '', "The run's directory (config, metrics, checkpoints); '' names one under runs/.")
  log_every: int = _field(1000, 'Environment steps between progress lines (chunk length).')
  checkpoint_every: int = _field(
      10_000, 'Environment steps between checkpoints, taken at the first evaluation at or '
      'after each multiple (and at the end).')
  keep_checkpoints: int = _field(3, 'Number of newest checkpoints kept in the run directory.')

  # -- one SAC member (docs/ALGORITHM.md §1) -----------------------------------------------
  replay_capacity: int = _field(1_000_000, 'Replay buffer capacity C (transitions per seed).')
  batch_size: int = _field(256, 'SAC minibatch size B, sampled uniformly with replacement.')
  warmup_steps: int = _field(
      10_000, 'Initial steps with uniform random actions and no update.')
  hidden_sizes: tuple[int, ...] = _field(
      (256, 256), 'Hidden layer sizes of the actor and of each critic (ReLU).')
  network_init: str = _field(
      'glorot_uniform', "Weight initialiser of every layer of the actor and critics (biases "
      "zero): 'glorot_uniform' (the reference's and softlearning's) or 'lecun_normal' "
      "(flax's nn.Dense default).")
  policy_output_scale: float = _field(
      1.0, "Scale of the actor's output layer's initial weights (the reference's "
      '--policy-output-scale: it multiplies the Glorot bound).')
  actor_lr: float = _field(3e-4, 'Adam learning rate of the actor.')
  critic_lr: float = _field(3e-4, 'Adam learning rate of the twin critics.')
  alpha_lr: float = _field(3e-4, 'Adam learning rate of the log temperature.')
  discount: float = _field(0.99, 'Discount factor gamma.')
  tau: float = _field(0.005, 'Polyak step of the target critics after every update.')
  init_alpha: float = _field(1.0, 'Initial temperature alpha.')
  log_std_min: float = _field(-20.0, 'Lower clip of the actor log-std.')
  log_std_max: float = _field(2.0, 'Upper clip of the actor log-std.')
  target_entropy_scale: float = _field(
      1.0, 'Target entropy is -target_entropy_scale * dim(A).')
  updates_per_step: int = _field(1, 'SAC updates of every member per environment step.')
  episode_length: int = _field(1000, 'Time limit of an episode (truncation, not termination).')
  solver: str = _field(
      'faithful', "The task's physics solver: 'faithful' (MuJoCo's settings), 'fast' (4 "
      "solver and 8 line-search iterations), 'capped' (the task's caps of both, as loops "
      "of static trip count for accelerators, where they keep parity: docs/TASKS.md), "
      "'warp' (MuJoCo Warp's implementation of MJX, pip install '.[warp]') or 'mujoco_c' "
      "(MuJoCo C's mj_step called from the program; CPU backends, tasks that read qpos "
      "and qvel alone).")
  seed_batch: int = _field(
      0, 'Seeds advanced as one vmapped batch, the batches one after another through '
      'each chunk; must divide num_seeds. 0: 1 on a CPU, all seeds on an accelerator '
      '(docs/BENCHMARKS.md).')
  num_devices: int = _field(
      0, 'Devices the lanes (the seeds of the runs trained together) are split over, each '
      'holding and training its own block of them; the lanes must divide over them. 0: '
      'as many of the devices of this process as divide the lanes (all when they do).')
  eval_batch: int = _field(
      0, 'Evaluation episodes stepped as one batch: a divisor of eval_episodes (each '
      "member's episodes in groups, one after another; less memory) or 0 for all S*K*E "
      'at once (docs/BENCHMARKS.md).')
  eval_overlap: bool = _field(
      True, 'Step an evaluation on a second host thread while training goes on (the '
      'same episodes of the same parameters; its record is written when it ends). Off: '
      'training waits for every evaluation.')
  matmul_precision: str = _field(
      'float32', "jax_default_matmul_precision: 'float32', 'tensorfloat32' or 'bfloat16'.")
  control_flow: str = _field(
      'auto', "How a training chunk's loops and branches compile: 'static' (fixed trip "
      'counts and selects: one program per chunk length and per warm-up or learning, in '
      "which an accelerator never waits on the host), 'dynamic' (one program for every "
      "chunk, with conditionals that skip work) or 'auto' (dynamic on a CPU, static "
      'elsewhere). The two agree to float32 rounding.')

  # -- the ensemble and distillation (docs/ALGORITHM.md §2-3) ------------------------------
  ensemble_size: int = _field(1, 'Number of members K sharing one replay buffer.')
  recent_episodes: int = _field(
      5, 'M: a member is scored by the mean return of its last M training episodes.')
  distill_interval: int = _field(
      5000, 'I: a phase follows every step t > warmup_steps with t % I == 0 (not the last).')
  share: str = _field(
      'none', "What a phase does: 'none', 'distill', 'hardcopy' or 'extra' (updates).")
  teacher: str = _field('best', "Teacher election: 'best' (argmax R_k) or 'random'.")
  distill_data: str = _field(
      'full', "Phase data: 'full' (epochs over the whole buffer) or 'sample' (minibatches).")
  distill_epochs: int = _field(5, 'Epochs per phase.')
  distill_batch_size: int = _field(256, 'Minibatch size of a phase.')
  distill_sample_batches: int = _field(
      20, "Random minibatches per epoch when distill_data='sample'.")
  distill_lr: float = _field(1e-3, 'Adam learning rate of the fresh per-phase optimisers.')
  extra_updates: str = _field(
      'policy_alpha',
      "Networks the *_extra variants update: 'policy_alpha' (reference) or 'all'.")

  @property
  def has_phases(self) -> bool:
    """Whether the run has knowledge-sharing phases: extra updates, or a teacher with at
    least one student (distillation or a hard copy with K >= 2)."""
    if self.share == 'extra':
      return True
    return self.share in ('distill', 'hardcopy') and self.ensemble_size >= 2

  def target_entropy(self, action_size: int) -> float:
    """SAC's target entropy, -target_entropy_scale * dim(A)."""
    return -self.target_entropy_scale * float(action_size)

  def validate(self) -> None:
    """Raises ValueError naming the first invalid field as its flag ``--name``."""
    for name in ('num_seeds', 'total_steps', 'eval_every', 'eval_episodes', 'log_every',
                 'checkpoint_every', 'keep_checkpoints', 'replay_capacity', 'batch_size',
                 'ensemble_size', 'distill_interval', 'recent_episodes', 'updates_per_step',
                 'episode_length', 'distill_epochs', 'distill_batch_size',
                 'distill_sample_batches'):
      value = getattr(self, name)
      if not _is_int(value) or value <= 0:
        _invalid(name, value, 'a positive integer')
    for name in ('seed', 'warmup_steps', 'seed_batch', 'num_devices'):
      value = getattr(self, name)
      if not _is_int(value) or value < 0:
        _invalid(name, value, 'a non-negative integer')
    all_episodes = self.num_seeds * self.ensemble_size * self.eval_episodes
    if not _is_int(self.eval_batch) or self.eval_batch < 0 or (
        self.eval_batch and self.eval_episodes % self.eval_batch
        and self.eval_batch != all_episodes):
      _invalid('eval_batch', self.eval_batch,
               f'0, a divisor of --eval_episodes ({self.eval_episodes}) or all '
               f'{all_episodes} episodes')
    if self.num_seeds % max(self.seed_batch, 1):
      _invalid('seed_batch', self.seed_batch,
               f'0 or a divisor of --num_seeds ({self.num_seeds})')
    if self.replay_capacity > MAX_REPLAY_CAPACITY:
      _invalid('replay_capacity', self.replay_capacity,
               f'at most {MAX_REPLAY_CAPACITY} (int32 row indices)')
    if self.warmup_steps < self.batch_size:
      _invalid('warmup_steps', self.warmup_steps,
               f'at least --batch_size ({self.batch_size})')
    if self.warmup_steps > self.total_steps:
      _invalid('warmup_steps', self.warmup_steps,
               f'at most --total_steps ({self.total_steps})')

    choices: Mapping[str, Collection[str]] = {
        'variant': tuple(VARIANTS),
        'solver': SOLVER_CHOICES,
        'network_init': NETWORK_INIT_CHOICES,
        'matmul_precision': MATMUL_PRECISION_CHOICES,
        'share': SHARE_CHOICES,
        'teacher': TEACHER_CHOICES,
        'distill_data': DISTILL_DATA_CHOICES,
        'extra_updates': EXTRA_UPDATES_CHOICES,
        'control_flow': CONTROL_FLOW_CHOICES,
    }
    for name, valid in choices.items():
      value = getattr(self, name)
      if value not in valid:
        _invalid(name, value, 'one of ' + ', '.join(valid))
    if not isinstance(self.env, str) or not self.env:
      _invalid('env', self.env, 'a task name')
    if not isinstance(self.eval_overlap, bool):
      _invalid('eval_overlap', self.eval_overlap, 'true or false')

    if not 0.0 < self.discount <= 1.0:
      _invalid('discount', self.discount, 'in (0, 1]')
    if not 0.0 < self.tau <= 1.0:
      _invalid('tau', self.tau, 'in (0, 1]')
    for name in ('actor_lr', 'critic_lr', 'alpha_lr', 'distill_lr', 'init_alpha',
                 'policy_output_scale'):
      value = getattr(self, name)
      if not 0.0 < value < math.inf:
        _invalid(name, value, 'a positive finite number')
    if not self.log_std_min < self.log_std_max:
      _invalid('log_std_min', self.log_std_min,
               f'below --log_std_max ({self.log_std_max})')
    if (not isinstance(self.hidden_sizes, tuple) or not self.hidden_sizes
        or not all(_is_int(h) and h > 0 for h in self.hidden_sizes)):
      _invalid('hidden_sizes', self.hidden_sizes, 'a non-empty tuple of positive integers')


# What a run's config.json written before a field existed ran with, where that differs
# from the field's default: networks took flax's nn.Dense initialiser until
# network_init was added.
_BEFORE_FIELD = {'network_init': 'lecun_normal'}


def from_dict(values: Mapping[str, Any]) -> Config:
  """The ``Config`` of a ``dataclasses.asdict`` (e.g. a run's ``config.json``); fields
  it lacks take what runs ran with before the field existed (``_BEFORE_FIELD``), else
  their defaults. Raises ValueError on an unknown field."""
  hints = typing.get_type_hints(Config)
  values = {**_BEFORE_FIELD, **values}
  if 'first_distill_step' in values:
    _check_retired_first_distill_step(values)
  unknown = sorted(set(values) - set(hints))
  if unknown:
    raise ValueError(f'unknown Config fields {unknown}')
  return Config(**{name: tuple(value) if typing.get_origin(hints[name]) is tuple else value
                   for name, value in values.items()})


def _check_retired_first_distill_step(values: dict[str, Any]) -> None:
  """Drops ``first_distill_step`` (written by versions before the reference's phase
  rule) from ``values`` when its first phase is the one the rule gives; raises
  ValueError otherwise, since this version would run another schedule."""
  first = values.pop('first_distill_step')
  defaults = Config()
  interval = values.get('distill_interval', defaults.distill_interval)
  warmup = values.get('warmup_steps', defaults.warmup_steps)
  if values.get('share', defaults.share) == 'none' or not _is_int(interval) or interval <= 0:
    return
  old = max(interval, -(-first // interval) * interval)
  new = (warmup // interval + 1) * interval
  if old != new:
    raise ValueError(
        f'first_distill_step={first} (first phase at step {old}) was written by an older '
        f'piekd_mjx; this version runs the first phase at step {new} (the first multiple of '
        f'--distill_interval={interval} past --warmup_steps={warmup}), so the run cannot '
        'go on with the same schedule')


_PHASE_ONLY_FIELDS = ('distill_interval', 'teacher', 'distill_data', 'distill_epochs',
                      'distill_batch_size', 'distill_sample_batches', 'distill_lr',
                      'extra_updates')


def ignored_fields(config: Config) -> dict[str, str]:
  """The fields whose value cannot change ``config``'s run, each with the reason: the
  phase settings of a run without phases, the teacher of extra updates, and so on."""
  if config.share == 'none':
    return dict.fromkeys(_PHASE_ONLY_FIELDS, '--share=none has no phases')
  if not config.has_phases:
    return dict.fromkeys(_PHASE_ONLY_FIELDS, f'--share={config.share} with --ensemble_size='
                         f'{config.ensemble_size} has no student, so no phases')
  ignored = {}
  if config.share == 'extra':
    ignored['teacher'] = '--share=extra elects no teacher'
    ignored['distill_lr'] = '--share=extra updates the members with their own optimisers'
  else:
    ignored['extra_updates'] = f'--share={config.share} does no extra updates'
  if config.share == 'hardcopy':
    ignored.update(dict.fromkeys(
        ('distill_data', 'distill_epochs', 'distill_sample_batches', 'distill_lr'),
        '--share=hardcopy copies the teacher and takes no gradient step'))
  elif config.distill_data == 'full':
    ignored['distill_sample_batches'] = "--distill_data='full' visits the whole buffer"
  return ignored


def without_ignored(config: Config) -> Config:
  """``config`` with every field in ``ignored_fields`` at its default: the same run."""
  defaults = Config()
  return dataclasses.replace(config, **{name: getattr(defaults, name)
                                        for name in ignored_fields(config)})


def ignored_flags(config: Config) -> list[str]:
  """One line per field set away from its default that ``config``'s variant ignores
  (``ignored_fields``), or that overrides the variant's sharing, naming the flag and
  why; the run goes on without it."""
  defaults = Config()
  lines = []
  if config.variant in VARIANTS:
    variant_share = VARIANTS[config.variant]['share']
    if config.share != variant_share:
      lines.append(f'--share={config.share!r} replaces what --variant={config.variant} '
                   f'shares ({variant_share!r}): the run is no longer that variant')
  if config.share != 'none' and not config.has_phases:
    lines.append(f'--share={config.share} with --ensemble_size={config.ensemble_size} '
                 'does nothing: a phase needs a teacher and at least one student')
  for name, why in ignored_fields(config).items():
    if getattr(config, name) != getattr(defaults, name):
      lines.append(f'--{name}={getattr(config, name)!r} is ignored: {why}')
  return lines


def check_resumable(run: Config, resumed: Config) -> None:
  """Raises ValueError naming the first field outside ``RESUMABLE_FIELDS`` in which
  ``resumed`` differs from the config ``run`` was started with."""
  for field in dataclasses.fields(Config):
    old, new = getattr(run, field.name), getattr(resumed, field.name)
    if field.name not in RESUMABLE_FIELDS and old != new:
      raise ValueError(
          f'--{field.name}={new!r} differs from the run\'s {old!r}, and --resume cannot '
          f'change it (only --{", --".join(RESUMABLE_FIELDS)} can)')


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _invalid(name: str, value: Any, valid: str) -> None:
  raise ValueError(f'--{name}={value!r} is invalid: must be {valid}')


# -- the paper's variants (docs/ALGORITHM.md §4) -------------------------------------------


# Each variant as the fields it sets; a user's explicit flags win over them.
VARIANTS: dict[str, dict[str, Any]] = {
    # One SAC agent, no sharing.
    'vanilla_sac': dict(ensemble_size=1, share='none'),
    # K = 3 members on a shared buffer, one member per episode, no sharing.
    'ensemble_sac': dict(ensemble_size=3, share='none'),
    # K = 3 members; every I steps the best member distils into the others.
    'piekd': dict(ensemble_size=3, share='distill', teacher='best'),
    # One SAC agent doing a phase's worth of extra updates at every phase boundary.
    'vanilla_sac_extra': dict(ensemble_size=1, share='extra'),
    # Ensemble SAC doing a phase's worth of extra updates at every phase boundary.
    'ensemble_sac_extra': dict(ensemble_size=3, share='extra'),
    # PIEKD with the teacher's actor and critics copied instead of distilled.
    'piekd_hardcopy': dict(ensemble_size=3, share='hardcopy', teacher='best'),
    # PIEKD with the teacher drawn uniformly among the members.
    'piekd_random_teacher': dict(ensemble_size=3, share='distill', teacher='random'),
}


def apply_variant(config: Config, explicit: Collection[str] = frozenset()) -> Config:
  """Applies ``VARIANTS[config.variant]``, keeping the fields named in ``explicit``.

  Args:
    config: the configuration, ``variant`` naming the variant to apply.
    explicit: names of the fields the user set (e.g. on the command line); their values
      in ``config`` win over the variant's, so ``--variant=piekd --ensemble_size=5`` runs
      PIEKD with five members.

  Returns:
    The configuration of the variant.

  Raises:
    ValueError: unknown variant or unknown field name in ``explicit``.
  """
  if config.variant not in VARIANTS:
    raise ValueError(f'--variant={config.variant!r} is invalid: must be one of '
                     + ', '.join(VARIANTS))
  names = {f.name for f in dataclasses.fields(Config)}
  unknown = sorted(set(explicit) - names)
  if unknown:
    raise ValueError(f'unknown Config fields {unknown}')
  return dataclasses.replace(config, **{**VARIANTS[config.variant],
                                        **{name: getattr(config, name) for name in explicit}})
