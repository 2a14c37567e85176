"""The compiled programs of a group of runs, cached per key, and the ``Trainer`` that binds them.

``train.py`` writes one lane's step; here it becomes jitted programs: the chunk (one
program with dynamic control flow, or one per chunk length with static), the fresh
state, the members' health, each run's evaluation and each phase kind's phase, cached
per ``keys`` key so that runs and groups that agree share them. Over several devices
each program runs on every device's block of lanes (``sharding``).
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from piekd_mjx import distill
from piekd_mjx import envs
from piekd_mjx import evaluate as evaluate_lib
from piekd_mjx import keys as keys_lib
from piekd_mjx import lanes as lanes_lib
from piekd_mjx import processes
from piekd_mjx import replay as replay_lib
from piekd_mjx import sac as sac_lib
from piekd_mjx import sharding as sharding_lib
from piekd_mjx.config import Config
from piekd_mjx.train import members_finite, phases
from piekd_mjx.train import Metrics, Parts, TrainState, chunk, init, make_parts


class Trainer(NamedTuple):
  """The jitted programs of a group of runs (one run: the group of its S seeds).

  Attributes:
    init: () -> TrainState of every lane.
    chunk: (state, num_steps, learn) -> (state, metrics): ``num_steps`` environment
      steps of every lane, learning (the acting member's actions and SAC updates of
      every member) or warming up (uniform random actions, no update); metrics are
      the chunk means of ``SAC_METRICS`` and the ``HEALTH_METRICS``, each [L, K].
      ``state`` is donated. ``collect`` and ``train`` name its two kinds.
    phase: (state, lanes=None) -> (state, metrics): one knowledge-sharing phase of the
      lanes ``lanes`` (host ints; None: every lane whose run has phases), each run by
      the program of its phase kind; the metrics' leaves lead with [n], in the order
      of ``lanes``. None when no run of the group has phases. ``state`` is donated.
    evaluate_members: (actor_params [S, K, ...], step [], run=0) -> returns [S, K, E]
      of deterministic evaluation episodes of run ``run``'s actors
      (``train.evaluation_inputs`` copies them out of a state).
    finite_params: (state) -> [L, K] bool, whether every floating-point leaf of each
      member's state (parameters, targets, optimiser states, temperature) is finite.
    configs: every run's configuration; lanes: the lanes of each run
      (``lanes.lane_slices``).
    parts: the static pieces of the lane program (SAC, replay, the training task).
    task: the task the programs step.
    settings: every lane's ``lanes.Settings``, on the device.
    mesh: the devices the lanes are split over (``sharding``); None for one device.
    place: (tree) -> the tree committed where the programs take it: a state, fresh or
      restored, on its devices (each [L, ...] leaf split over ``mesh``).
  """

  init: Callable[[], TrainState]
  chunk: Callable[[TrainState, int, bool], tuple[TrainState, Metrics]]
  phase: Callable[..., tuple[TrainState, dict[str, np.ndarray]]] | None
  evaluate_members: Callable[..., jax.Array]
  finite_params: Callable[[TrainState], jax.Array]
  configs: tuple[Config, ...]
  lanes: tuple[slice, ...]
  parts: Parts
  task: envs.MjxTask
  settings: lanes_lib.Settings
  mesh: sharding_lib.Mesh | None
  place: Callable[[TrainState], TrainState]

  @property
  def config(self) -> Config:
    """The first run's configuration (the group's shared fields are its)."""
    return self.configs[0]

  @property
  def sac(self) -> sac_lib.Sac:
    return self.parts.sac

  @property
  def replay(self) -> replay_lib.Replay:
    return self.parts.replay

  def collect(self, state: TrainState, num_steps: int) -> tuple[TrainState, Metrics]:
    """Warm-up steps: uniform random actions, no update."""
    return self.chunk(state, num_steps, False)

  def train(self, state: TrainState, num_steps: int) -> tuple[TrainState, Metrics]:
    """Learning steps: the acting member acts, every member updates."""
    return self.chunk(state, num_steps, True)

  def evaluate(self, state: TrainState, run: int = 0) -> jax.Array:
    """Run ``run``'s returns [S, K, E] of deterministic evaluation episodes."""
    actors = jax.tree.map(lambda x: x[self.lanes[run]], state.members.actor_params)
    return self.evaluate_members(actors, state.step, run)


def with_precision(precision: str, fn: Callable) -> Callable:
  """Traces ``fn`` under ``jax.default_matmul_precision(precision)``."""

  def traced(*args, **kwargs):
    with jax.default_matmul_precision(precision):
      return fn(*args, **kwargs)

  return traced


@functools.lru_cache(maxsize=None)
def default_task(env: str, solver: str) -> envs.MjxTask:
  """The task of a run built without one, once per process (so runs share programs)."""
  return envs.make(env, solver=solver)


class _Programs(NamedTuple):
  """The jitted lane programs shared by every group of one ``program_key``, L and
  batch."""

  init: Callable[[jax.Array, lanes_lib.Settings], TrainState]
  chunk: Callable[..., tuple[TrainState, Metrics]]
  finite_params: Callable[[TrainState], jax.Array]
  parts: Parts


@functools.lru_cache(maxsize=None)
def _lane_programs(key: Config, task: envs.MjxTask, batch: int,
                   mesh: sharding_lib.Mesh | None = None) -> _Programs:
  """``mesh``: each device runs the programs on its own block of lanes (None: one
  device)."""
  parts = make_parts(key, task)
  init_fn = functools.partial(init, parts)
  chunk_fn = with_precision(key.matmul_precision, functools.partial(chunk, parts, batch))
  finite_fn = lambda state: members_finite(state.members)
  placed = {'init': {}, 'chunk': {}, 'finite': {}}  # each program's out_shardings
  example = None
  if mesh is not None:
    keys, settings, state = _example(parts, key, task)
    example = (state, settings)
    init_fn, placed['init'] = _over_devices(init_fn, mesh, keys, settings)
    finite_fn, placed['finite'] = _over_devices(finite_fn, mesh, state)
  if parts.static:
    chunk_program = _StaticChunks(chunk_fn, mesh, example)
  else:
    if mesh is not None:
      chunk_fn, placed['chunk'] = _over_devices(chunk_fn, mesh, state, np.int32(1),
                                                np.bool_(True), settings)
    chunk_program = jax.jit(_positional(chunk_fn), donate_argnums=0, **placed['chunk'])
  return _Programs(init=jax.jit(init_fn, **placed['init']), chunk=chunk_program,
                   finite_params=jax.jit(finite_fn, **placed['finite']), parts=parts)


class _StaticChunks:
  """The chunk program with static control flow: ``(state, num_steps, learn, settings)``
  runs the program compiled for that ``num_steps`` and ``learn``, compiling it on first
  use (a run's schedule has few chunk lengths: ``log_every`` and the remainders before
  its events). ``example``: (state, settings) of the ranks of ``mesh``'s programs."""

  def __init__(self, fn: Callable, mesh: sharding_lib.Mesh | None, example: tuple | None):
    self._fn, self._mesh, self._example = fn, mesh, example
    self._programs: dict[tuple[int, bool], Callable] = {}

  def __call__(self, state: TrainState, num_steps: int, learn: bool,
               settings: lanes_lib.Settings) -> tuple[TrainState, Metrics]:
    static = (operator.index(num_steps), bool(learn))
    if static not in self._programs:
      fn = lambda state, settings: self._fn(state, *static, settings)
      placed = {}
      if self._mesh is not None:
        fn, placed = _over_devices(fn, self._mesh, *self._example)
      self._programs[static] = jax.jit(fn, donate_argnums=0, **placed)
    return self._programs[static](state, settings)


def _example(parts: Parts, key: Config, task: envs.MjxTask) -> tuple:
  """(keys, settings, state) of one lane, shapes only where it can: the example from
  which a program's shardings are read (they depend on its leaves' ranks alone)."""
  settings = lanes_lib.settings([key], task.action_size)
  keys = jax.ShapeDtypeStruct((1, 2), jnp.uint32)
  return keys, settings, jax.eval_shape(functools.partial(init, parts), keys, settings)


def _over_devices(fn: Callable, mesh: sharding_lib.Mesh, *example
                  ) -> tuple[Callable, dict[str, object]]:
  """``fn`` run by each device of ``mesh`` on its block of every [L, ...] argument and
  result (``example``: arguments of ``fn``'s structure and ranks), and the ``jax.jit``
  argument that fixes its results' shardings to those ``sharding.put`` gives a state:
  left to XLA, an empty leaf may come back replicated over several processes, and the
  next call would compile the program again for it."""
  out = jax.eval_shape(fn, *example)
  return (sharding_lib.over_devices(fn, mesh, sharding_lib.specs(example),
                                    sharding_lib.specs(out)),
          {'out_shardings': sharding_lib.shardings(out, mesh)})


def _positional(fn: Callable) -> Callable:
  """``fn(state, num_steps, learn, settings)`` that also takes its last three by name,
  as the trainer's partials pass them, with its scalars as arrays."""

  def call(state, num_steps, learn, settings):
    return fn(state, jnp.asarray(num_steps, jnp.int32), jnp.asarray(learn, jnp.bool_),
              settings)

  return call


@functools.lru_cache(maxsize=None)
def _evaluation_program(key: Config, task: envs.MjxTask) -> Callable[..., jax.Array]:
  """(base key, actor_params [S, K, ...], step) -> returns [S, K, E] of one run."""
  parts = _lane_programs(keys_lib.program_key(key), task, 1).parts
  episodes = evaluate_lib.make_evaluate(task, parts.sac, key.episode_length,
                                        key.eval_episodes, keys_lib.eval_batch(key))

  def evaluate(base: jax.Array, actor_params: sac_lib.Params, step: jax.Array) -> jax.Array:
    key = jax.random.fold_in(base, step)
    key = jax.random.fold_in(key, 0x5EED)  # evaluation keys apart from training keys
    return episodes(actor_params, key)

  return jax.jit(with_precision(key.matmul_precision, evaluate))


@functools.lru_cache(maxsize=None)
def _phase_program(key: Config, task: envs.MjxTask, batch: int,
                   mesh: sharding_lib.Mesh | None = None) -> Callable[..., tuple]:
  """(state, settings [L], lanes) -> (state, metrics): one phase of the lanes ``lanes``,
  all of the kind of ``key``: lanes [n] and metrics [n, ...]; with ``mesh``, each
  device's local lanes [D, m] (``sharding.local_lanes``) and metrics [D * m, ...]."""
  parts = _lane_programs(keys_lib.program_key(key), task, 1).parts
  phase = distill.make_phase(key, parts.sac, parts.replay)
  fn = with_precision(key.matmul_precision, functools.partial(phases, phase, batch))
  placed = {}
  if mesh is not None:
    _, settings, state = _example(parts, key, task)
    local = fn
    fn, placed = _over_devices(lambda state, settings, lanes: local(state, settings, lanes[0]),
                               mesh, state, settings, np.zeros((1, 1), np.int32))
  return jax.jit(fn, donate_argnums=0, **placed)


def _phase_lanes(lanes: list[int], num_lanes: int, mesh: sharding_lib.Mesh | None
                 ) -> tuple[np.ndarray, list[int | None]]:
  """A phase program's lanes argument for ``lanes`` and the lane of each row of its
  metrics (None: a padding row): ``lanes`` themselves on one device; with ``mesh``,
  each device's own lanes as local indices, -1 padded ([D, m]; metrics [D * m])."""
  if mesh is None:
    return np.asarray(lanes, np.int32), list(lanes)
  local = sharding_lib.local_lanes(lanes, num_lanes, mesh)
  per_device = num_lanes // mesh.size
  return local, [lane + d * per_device if lane >= 0 else None
                 for d, row in enumerate(local) for lane in row]


def make_trainer(config: Config, task: envs.MjxTask | None = None) -> Trainer:
  """The jitted programs of one run (validated, variant applied): the group of its
  seeds, sharing programs with every earlier trainer of this process whose keys
  agree."""
  return make_group_trainer([config], task)


def make_group_trainer(configs: Sequence[Config], task: envs.MjxTask | None = None
                       ) -> Trainer:
  """The jitted programs that train ``configs`` (validated, variants applied) as the
  lanes of one program, run r on lanes ``lanes.lane_slices(configs)[r]``.

  Raises:
    ValueError: the runs do not share one ``group_key``, or their ``seed_batch`` does
      not divide the lanes.
  """
  configs = tuple(configs)
  if len({keys_lib.group_key(config) for config in configs}) != 1:
    raise ValueError('the runs of a group must share their group_key (task, K, network '
                     'and batch sizes, replay capacity, episode length, warm-up, length, '
                     'evaluation, logging and checkpoint schedules)')
  config = configs[0]
  task = task if task is not None else default_task(config.env, config.solver)
  num_lanes = lanes_lib.num_lanes(configs)
  slices = lanes_lib.lane_slices(configs)
  devices = sharding_lib.lane_mesh(config.num_devices, num_lanes)
  evaluation_devices = _evaluation_devices(devices, slices, num_lanes)
  mesh, batch, place = _placement(devices, num_lanes, keys_lib.lane_batch(configs))
  programs = _lane_programs(keys_lib.program_key(config), task, batch, mesh)
  settings = place(lanes_lib.settings(configs, task.action_size))
  phase_lanes = [lane for c, s in zip(configs, slices) if c.has_phases
                 for lane in range(s.start, s.stop)]
  phase = _GroupPhase(configs, task, batch, mesh, settings, place,
                      phase_lanes) if phase_lanes else None
  return Trainer(
      init=functools.partial(programs.init, place(lanes_lib.lane_keys(configs)), settings),
      chunk=functools.partial(programs.chunk, settings=settings), phase=phase,
      evaluate_members=_Evaluations(configs, task, evaluation_devices),
      finite_params=programs.finite_params, configs=configs, lanes=slices,
      parts=programs.parts, task=task, settings=settings, mesh=mesh, place=place)


def _placement(devices: sharding_lib.Mesh, num_lanes: int, batch: int
               ) -> tuple[sharding_lib.Mesh | None, int, Callable]:
  """The mesh a group's programs split its lanes over (None: one device), its lane
  batch (of each device's lanes) and the function that places a tree where its
  programs take it."""
  if devices.size == 1:
    device = devices.devices.flat[0]
    return None, batch, lambda tree: jax.device_put(tree, device)
  sharding_lib.check_lanes(num_lanes, devices)
  return (devices, math.gcd(batch, num_lanes // devices.size),
          functools.partial(sharding_lib.put, mesh=devices))


def _evaluation_devices(devices: sharding_lib.Mesh, slices: Sequence[slice],
                        num_lanes: int) -> list[jax.Device]:
  """Each run's evaluation device: that of its first lane, or this process's own
  where another process holds it (``processes.own_device``)."""
  per_device = num_lanes // devices.size
  return [processes.own_device(devices.devices.flat[s.start // per_device]) for s in slices]


class _Evaluations:
  """(actor_params [S, K, ...], step, run=0) -> run ``run``'s returns [S, K, E]: its
  evaluation program on its device. The base key is an argument, not a constant of
  the programs, so runs that differ only in ``--seed`` share their compiled programs."""

  def __init__(self, configs: Sequence[Config], task: envs.MjxTask,
               devices: Sequence[jax.Device]):
    self._bases = [jax.random.PRNGKey(c.seed) for c in configs]
    self._programs = [_evaluation_program(keys_lib.evaluation_key(c), task) for c in configs]
    self._devices = list(devices)

  def __call__(self, actor_params: sac_lib.Params, step: jax.Array, run: int = 0
               ) -> jax.Array:
    # A run's actors (small) on one device, where its evaluation runs as it would alone.
    actor_params, step = jax.device_put((actor_params, step), self._devices[run])
    return self._programs[run](self._bases[run], actor_params, step)


class _GroupPhase:
  """(state, lanes=None) -> (state, metrics): the phase of ``lanes`` (None: every lane
  of ``phase_lanes``), one program per phase kind among them, the metrics' rows in the
  order of ``lanes``."""

  def __init__(self, configs: Sequence[Config], task: envs.MjxTask, batch: int,
               mesh: sharding_lib.Mesh | None, settings: lanes_lib.Settings,
               place: Callable, phase_lanes: Sequence[int]):
    self._configs, self._task, self._batch, self._mesh = configs, task, batch, mesh
    self._settings, self._place, self._phase_lanes = settings, place, list(phase_lanes)
    self._run_of_lane = np.concatenate([np.full(c.num_seeds, r)
                                        for r, c in enumerate(configs)])

  def __call__(self, state: TrainState, lanes: Sequence[int] | None = None
               ) -> tuple[TrainState, dict[str, np.ndarray]]:
    lanes = list(self._phase_lanes if lanes is None else lanes)
    by_kind: dict[tuple, list[int]] = {}
    for lane in lanes:
      config = self._configs[self._run_of_lane[lane]]
      by_kind.setdefault(distill.phase_kind(config), []).append(lane)
    merged: dict[str, np.ndarray] = {}
    num_lanes = len(self._run_of_lane)
    for kind_lanes in by_kind.values():
      config = self._configs[self._run_of_lane[kind_lanes[0]]]
      program = _phase_program(keys_lib.phase_key(config), self._task, self._batch,
                               self._mesh)
      at, where = _phase_lanes(kind_lanes, num_lanes, self._mesh)
      state, metrics = program(state, self._settings, self._place(at))
      metrics = processes.fetch(metrics)
      rows = [(i, lanes.index(lane)) for i, lane in enumerate(where) if lane is not None]
      got, put = [i for i, _ in rows], [j for _, j in rows]
      for name, value in metrics.items():
        value = np.asarray(value)
        if name not in merged:
          merged[name] = np.zeros((len(lanes),) + value.shape[1:], value.dtype)
        merged[name][put] = value[got]
    return state, merged
