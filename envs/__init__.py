"""MuJoCo locomotion tasks on MJX, faithful to Gymnasium's ``*-v5`` definitions.

``make(name)`` builds a task; ``names()`` lists them. ``make('stub')`` builds the
physics-free task of the tests (``stub.py``), which ``names()`` leaves out. Installed,
this folder is the package ``piekd_mjx.envs``.

A task's module is imported when its class is first asked for: importing MJX takes
seconds, and the command lines check a task's name (and answer bad input) without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
  from piekd_mjx.envs.base import MjxTask
  from piekd_mjx.envs.base import SolverOptions

# name -> (module of this package, class), imported on first use.
_TASKS: dict[str, tuple[str, str]] = {
    'ant': ('ant', 'Ant'),
    'halfcheetah': ('half_cheetah', 'HalfCheetah'),
    'hopper': ('hopper', 'Hopper'),
    'humanoid': ('humanoid', 'Humanoid'),
    'inverted_pendulum': ('inverted_pendulum', 'InvertedPendulum'),
    'walker2d': ('walker2d', 'Walker2d'),
}

# Tasks that are not MuJoCo's: physics-free, for tests (``names()`` leaves them out).
STUBS: dict[str, tuple[str, str]] = {'stub': ('stub', 'Stub')}

# The Gymnasium id each task reproduces (used by the parity tests and benchmarks).
GYMNASIUM_IDS: dict[str, str] = {
    'ant': 'Ant-v5',
    'halfcheetah': 'HalfCheetah-v5',
    'hopper': 'Hopper-v5',
    'humanoid': 'Humanoid-v5',
    'inverted_pendulum': 'InvertedPendulum-v5',
    'walker2d': 'Walker2d-v5',
}

# Solvers every task offers (the stub included), so that a check of one needs no task
# class; the others (capped, warp) are offered task by task (``solver_options``).
EVERY_TASK_SOLVERS = ('faithful', 'fast')

# What the package re-exports from envs/base.py, imported on first use.
_FROM_BASE = ('MjxTask', 'SOLVERS', 'State')


def names() -> tuple[str, ...]:
  """The valid task names, sorted."""
  return tuple(sorted(_TASKS))


def make_class(name: str) -> type[MjxTask]:
  """The task class of ``name`` (one of ``names()`` or ``STUBS``), without building it."""
  if name not in _TASKS and name not in STUBS:
    raise ValueError(f'unknown task {name!r}; valid: {", ".join(names())}')
  module, cls = _TASKS.get(name) or STUBS[name]
  return getattr(importlib.import_module(f'{__name__}.{module}'), cls)


def make(name: str, solver: str | SolverOptions = 'faithful') -> MjxTask:
  """Builds the task ``name``; ``solver`` is 'faithful' (default), 'fast', 'capped' (where
  the task offers it) or ``SolverOptions``."""
  return make_class(name)(solver=solver)


def __getattr__(name: str) -> Any:
  """``MjxTask``, ``SOLVERS`` and ``State`` from envs/base.py, and the package's modules
  (``envs.base``), imported when first named."""
  if name in _FROM_BASE:
    return getattr(importlib.import_module(f'{__name__}.base'), name)
  try:
    return importlib.import_module(f'{__name__}.{name}')
  except ModuleNotFoundError as error:
    if error.name != f'{__name__}.{name}':
      raise  # the module is there; something it imports is not
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}') from None


__all__ = ['EVERY_TASK_SOLVERS', 'GYMNASIUM_IDS', 'MjxTask', 'SOLVERS', 'STUBS', 'State',
           'make', 'make_class', 'names']
