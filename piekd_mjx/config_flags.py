"""absl flags generated from the fields of ``Config``, in one loop.

Each field becomes a flag of the same name, type and default, with the field's
one-line docstring as its help; tuples of ints are comma-separated lists.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from typing import Sequence

from absl import flags

from piekd_mjx import grid
from piekd_mjx.config import Config


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines one flag per ``Config`` field on ``flag_values``."""
  hints = typing.get_type_hints(Config)
  for field in dataclasses.fields(Config):
    kind, default, doc = hints[field.name], field.default, field.metadata['help']
    if kind is bool:
      flags.DEFINE_bool(field.name, default, doc, flag_values=flag_values)
    elif kind is int:
      flags.DEFINE_integer(field.name, default, doc, flag_values=flag_values)
    elif kind is float:
      flags.DEFINE_float(field.name, default, doc, flag_values=flag_values)
    elif kind is str:
      flags.DEFINE_string(field.name, default, doc, flag_values=flag_values)
    elif typing.get_origin(kind) is tuple:
      flags.DEFINE_list(field.name, [str(v) for v in default], doc, flag_values=flag_values)
    else:
      raise TypeError(f'Config.{field.name}: no flag type for {kind!r}')


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> tuple[Config, frozenset]:
  """The ``Config`` the flags describe, and the names of the flags given explicitly.

  Raises ValueError naming the flag when a list flag holds a non-integer.
  """
  hints = typing.get_type_hints(Config)
  values, explicit = {}, set()
  for field in dataclasses.fields(Config):
    value = flag_values[field.name].value
    if typing.get_origin(hints[field.name]) is tuple:
      try:
        value = tuple(int(v) for v in value)
      except ValueError:
        raise ValueError(f'--{field.name}={",".join(value)} is invalid: must be a '
                         'comma-separated list of integers') from None
    values[field.name] = value
    if flag_values[field.name].present:
      explicit.add(field.name)
  return Config(**values), frozenset(explicit)


def define_multi_flags(flag_values: flags.FlagValues) -> None:
  """Defines one repeatable flag per ``Config`` field on ``flag_values`` (for sweeps:
  the runs are the product of the values given); a field not given keeps its default."""
  for field in dataclasses.fields(Config):
    flags.DEFINE_multi_string(
        field.name, [], f'{field.metadata["help"]} Repeat for several values.',
        flag_values=flag_values)


def values_from_multi_flags(flag_values: flags.FlagValues) -> dict[str, tuple]:
  """The values given to each field's repeatable flag (``define_multi_flags``), parsed
  to the field's type; fields not given are left out.

  Raises ValueError naming the flag when a value is not of its field's type.
  """
  values = {}
  for field in dataclasses.fields(Config):
    given = flag_values[field.name].value
    if given:
      values[field.name] = tuple(dict.fromkeys(
          grid.parse_value(field.name, text) for text in given))
  return values


_FLAGFILE = '--flagfile='
# Flags whose value is a file, read against the folder of the flag file that names them.
_FILE_FLAGS = (_FLAGFILE, '--figure_file=')


def _resolve(path: str, folder: str | None) -> str:
  """``path`` named in a flag file of ``folder`` (None: on the command line)."""
  if folder is not None and not os.path.isabs(path):
    beside = os.path.join(folder, path)
    path = beside if os.path.isfile(beside) else path
  return os.path.abspath(os.path.expanduser(path))


def expand_flagfiles(argv: Sequence[str], folder: str | None = None,
                     seen: frozenset[str] = frozenset()) -> list[str]:
  """``argv`` with each ``--flagfile=PATH`` replaced by the flags of its file, so that a
  figure file runs from any working directory: a relative file named inside a flag file
  (``--flagfile``, ``--figure_file``) is read against that file's folder, and against
  the working directory (absl's way) where that folder has no such file. A file that
  cannot be read is left for absl to report."""
  expanded = []
  for arg in argv:
    prefix = next((p for p in _FILE_FLAGS if arg.startswith(p)), None)
    if prefix is None:
      expanded.append(arg)
      continue
    path = _resolve(arg[len(prefix):], folder)
    if prefix != _FLAGFILE:
      expanded.append(prefix + (path if folder is not None else arg[len(prefix):]))
      continue
    if not os.path.isfile(path):
      expanded.append(arg)  # absl reports it as it always has
      continue
    if path in seen:
      expanded.append(_FLAGFILE + path)  # a loop: absl reports it
      continue
    with open(path, encoding='utf-8') as f:
      lines = [line.strip() for line in f]
    flags_ = [line for line in lines if line and not line.startswith(('#', '//'))]
    expanded += expand_flagfiles(flags_, os.path.dirname(path), seen | {path})
  return expanded


def parse_or_exit(flag_values: flags.FlagValues, argv: list[str]) -> None:
  """Parses ``argv`` into ``flag_values`` (which defines ``--help``), flag files read by
  ``expand_flagfiles``; a bad flag is one line ``error: ...`` and exit code 2,
  ``--help`` prints the flags and exits 0."""
  try:
    flag_values(argv[:1] + expand_flagfiles(argv[1:]))
  except flags.Error as e:
    print(f'error: {str(e).splitlines()[0]}', file=sys.stderr, flush=True)
    sys.exit(2)
  if flag_values.help:
    print(flag_values.get_help())
    sys.exit(0)
