"""MuJoCo locomotion tasks on MJX, faithful to Gymnasium's ``*-v5`` definitions.

``make(name)`` builds a task; ``names()`` lists them. ``make('stub')`` builds the
physics-free task of the tests (``stub.py``), which ``names()`` leaves out. Installed,
this folder is the package ``piekd_mjx.envs``.
"""

from __future__ import annotations

from piekd_mjx.envs import ant
from piekd_mjx.envs import base
from piekd_mjx.envs import half_cheetah
from piekd_mjx.envs import hopper
from piekd_mjx.envs import humanoid
from piekd_mjx.envs import inverted_pendulum
from piekd_mjx.envs import stub
from piekd_mjx.envs import walker2d
from piekd_mjx.envs.base import MjxTask
from piekd_mjx.envs.base import SOLVERS
from piekd_mjx.envs.base import State

_TASKS: dict[str, type[MjxTask]] = {
    'ant': ant.Ant,
    'halfcheetah': half_cheetah.HalfCheetah,
    'hopper': hopper.Hopper,
    'humanoid': humanoid.Humanoid,
    'inverted_pendulum': inverted_pendulum.InvertedPendulum,
    'walker2d': walker2d.Walker2d,
}

# Tasks that are not MuJoCo's: physics-free, for tests (``names()`` leaves them out).
STUBS: dict[str, type] = {'stub': stub.Stub}

# The Gymnasium id each task reproduces (used by the parity tests and benchmarks).
GYMNASIUM_IDS: dict[str, str] = {
    'ant': 'Ant-v5',
    'halfcheetah': 'HalfCheetah-v5',
    'hopper': 'Hopper-v5',
    'humanoid': 'Humanoid-v5',
    'inverted_pendulum': 'InvertedPendulum-v5',
    'walker2d': 'Walker2d-v5',
}


def names() -> tuple[str, ...]:
  """The valid task names, sorted."""
  return tuple(sorted(_TASKS))


def make_class(name: str) -> type[MjxTask]:
  """The task class of ``name`` (one of ``names()`` or ``STUBS``), without building it."""
  if name not in _TASKS and name not in STUBS:
    raise ValueError(f'unknown task {name!r}; valid: {", ".join(names())}')
  return _TASKS.get(name) or STUBS[name]


def make(name: str, solver: str | base.SolverOptions = 'faithful') -> MjxTask:
  """Builds the task ``name``; ``solver`` is 'faithful' (default), 'fast', 'capped' (where
  the task offers it) or ``SolverOptions``."""
  return make_class(name)(solver=solver)


__all__ = ['GYMNASIUM_IDS', 'MjxTask', 'SOLVERS', 'STUBS', 'State', 'make', 'make_class',
           'names']
