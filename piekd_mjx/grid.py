"""A sweep's runs: figures as grids of configs, and each run's identity and directory.

A ``Figure`` is one experiment of the paper (or of a user): tasks, arms and the values
of any other ``Config`` field. Its runs are the product of the tasks, the arms and every
field's values. An arm is a variant with optional field settings
(``piekd,distill_interval=1000``), so a figure can hold arms that a plain product of
flags could not (Ensemble-SAC beside PIEKD at three intervals).

A run's identity is its config less what cannot change its training: the fields that
may change on resume (``config.RESUMABLE_FIELDS``: how far it goes, how often it is
evaluated and logged) and the fields its variant ignores (``config.ignored_fields``).
Its directory is named by the identity's hash, so a run that two figures share, or
that a product lists twice, trains once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import typing
from typing import Any, Mapping, Sequence

from piekd_mjx import config as config_lib
from piekd_mjx.config import Config

# The curves a figure can draw of each arm: the best and the worst member per seed.
CURVES = ('best', 'worst')


@dataclasses.dataclass(frozen=True)
class Arm:
  """One line of a figure: a variant and the fields it sets (``name=value`` strings)."""

  variant: str
  settings: tuple[tuple[str, Any], ...] = ()

  @property
  def label(self) -> str:
    """``piekd (distill_interval=1000)``: the variant and its settings, for legends."""
    if not self.settings:
      return self.variant
    return f'{self.variant} ({", ".join(f"{k}={v}" for k, v in self.settings)})'

  @property
  def spec(self) -> str:
    """The ``--arm`` value this arm was parsed from (normalised)."""
    return ','.join([self.variant] + [f'{k}={_format(v)}' for k, v in self.settings])


@dataclasses.dataclass(frozen=True)
class Figure:
  """A grid of runs and what its plots draw.

  Attributes:
    name: the figure's name (its file of the report).
    title: a line for the plot and the report.
    arms: the lines of the figure.
    values: every other ``Config`` field given, with its values (``env`` among them):
      the runs are the product of these and the arms.
    explicit: the fields given explicitly, which win over a variant's values.
    curves: what each arm draws (``CURVES``).
    baselines: labels of the arms that are baselines (the report compares against the
      best of them).
  """

  name: str
  title: str
  arms: tuple[Arm, ...]
  values: tuple[tuple[str, tuple[Any, ...]], ...]
  explicit: frozenset[str] = frozenset()
  curves: tuple[str, ...] = ('best',)
  baselines: tuple[str, ...] = ()

  def runs(self) -> list[tuple[Arm, Config]]:
    """Every (arm, config) of the grid, validated, in a fixed order; an arm's settings
    win over the figure's values of the same field."""
    names = [name for name, _ in self.values]
    listed = []
    for arm in self.arms:
      for combination in itertools.product(*(values for _, values in self.values)):
        fields = dict(zip(names, combination))
        fields.update(arm.settings)
        fields['variant'] = arm.variant
        explicit = (self.explicit | {k for k, _ in arm.settings}) - {'variant'}
        config = config_lib.apply_variant(Config(**fields), explicit)
        config.validate()
        listed.append((arm, config))
    return listed

  def to_json(self) -> dict[str, Any]:
    return {'name': self.name, 'title': self.title,
            'arms': [arm.spec for arm in self.arms],
            'labels': [arm.label for arm in self.arms],
            'values': {k: [_jsonable(v) for v in vs] for k, vs in self.values},
            'curves': list(self.curves), 'baselines': list(self.baselines)}


def parse_value(name: str, text: str) -> Any:
  """The value of field ``name`` written as ``text`` (tuples comma-separated).

  Raises ValueError naming the field when ``text`` is not of its type.
  """
  hints = typing.get_type_hints(Config)
  if name not in hints:
    raise ValueError(f'{name!r} is not a Config field')
  kind = hints[name]
  try:
    if typing.get_origin(kind) is tuple:
      return tuple(int(v) for v in text.replace('/', ',').split(','))
    if kind is bool:
      if text.lower() not in ('true', 'false', '1', '0'):
        raise ValueError(text)
      return text.lower() in ('true', '1')
    return kind(text)
  except ValueError:
    raise ValueError(f'--{name}={text!r} is invalid: must be {_kind_name(kind)}') from None


def parse_arm(spec: str) -> Arm:
  """``VARIANT[,FIELD=VALUE...]`` as an ``Arm`` (tuple values joined with ``/``).

  Raises ValueError on an unknown variant, field or value.
  """
  variant, *settings = [part.strip() for part in spec.split(',')]
  if variant not in config_lib.VARIANTS:
    raise ValueError(f'--arm={spec!r} is invalid: {variant!r} is not one of '
                     + ', '.join(config_lib.VARIANTS))
  parsed = []
  for setting in settings:
    name, sep, text = setting.partition('=')
    if not sep or name in ('variant', 'env'):
      raise ValueError(f'--arm={spec!r} is invalid: {setting!r} must be FIELD=VALUE for '
                       'a Config field other than variant and env')
    try:
      parsed.append((name, parse_value(name, text)))
    except ValueError as e:
      raise ValueError(f'--arm={spec!r} is invalid: {e}') from None
  return Arm(variant, tuple(parsed))


def identity(config: Config) -> dict[str, Any]:
  """What makes ``config`` a run of its own: its fields less ``RESUMABLE_FIELDS``,
  ``PLACEMENT_FIELDS`` and those its variant ignores (at their defaults), as JSON-ready
  values."""
  same_run = config_lib.without_ignored(config)
  left_out = config_lib.RESUMABLE_FIELDS + config_lib.PLACEMENT_FIELDS
  return {name: _jsonable(value) for name, value in dataclasses.asdict(same_run).items()
          if name not in left_out}


def run_name(config: Config) -> str:
  """The run's directory name: task, variant and a hash of its ``identity``."""
  text = json.dumps(identity(config), sort_keys=True, separators=(',', ':'))
  digest = hashlib.sha256(text.encode()).hexdigest()[:12]
  return f'{config.env}-{config.variant}-{digest}'


def unique_runs(figures: Sequence[Figure]) -> list[Config]:
  """The runs of every figure, each identity once (the longest ``total_steps`` any
  figure asks of it, the fields its variant ignores at their defaults), in the order
  first listed."""
  by_name: dict[str, Config] = {}
  for figure in figures:
    for _, config in figure.runs():
      config = config_lib.without_ignored(config)
      name = run_name(config)
      if name not in by_name:
        by_name[name] = config
        continue
      first = by_name[name]
      for field in ('eval_every', 'eval_episodes'):
        if getattr(config, field) != getattr(first, field):
          raise ValueError(
              f'--{field}: figure {figure.name!r} asks {getattr(config, field)} of run '
              f'{name}, which another figure evaluates with {getattr(first, field)}; '
              'its records would not serve both')
      if config.total_steps > first.total_steps:
        by_name[name] = dataclasses.replace(first, total_steps=config.total_steps)
  return list(by_name.values())


def _jsonable(value: Any) -> Any:
  return list(value) if isinstance(value, tuple) else value


def _format(value: Any) -> str:
  return '/'.join(map(str, value)) if isinstance(value, tuple) else str(value)


def _kind_name(kind: Any) -> str:
  if typing.get_origin(kind) is tuple:
    return 'integers separated by commas'
  return {int: 'an integer', float: 'a number', str: 'a string', bool: 'true or false'}.get(
      kind, str(kind))


def values_from(mapping: Mapping[str, Sequence[Any]]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
  """``Figure.values`` of a mapping, fields in ``Config``'s order."""
  order = [f.name for f in dataclasses.fields(Config)]
  return tuple((name, tuple(mapping[name])) for name in order if name in mapping)
