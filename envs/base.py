"""The base of every task: a Gymnasium ``*-v5`` MuJoCo model stepped by MJX.

A task follows brax's environment interface (``reset(key) -> State``,
``step(State, action) -> State``, ``observation_size``, ``action_size``), so brax's
own wrappers and trainers run it. ``State.done`` is termination only; the time limit
belongs to the episode wrapper (``piekd_mjx.envs.wrappers``).

Fidelity to Gymnasium (MuJoCo C) rests on three facts that the subclasses rely on:

* The model is Gymnasium's own MJCF file, loaded from the installed package.
* One step writes the action into ``ctrl`` and calls ``mjx.step`` ``frame_skip``
  times, then ``mjx.rne_postconstraint`` where the task reads ``cfrc_ext``, exactly as
  ``MujocoEnv._step_mujoco_simulation`` calls ``mj_step`` and ``mj_rnePostConstraint``.
  Position-dependent fields (``xpos``, ``cinert``, ...) therefore lag ``qpos`` by one
  sub-step after a step, as they do in Gymnasium, and the tasks read them the same way.
* A reset sets ``qpos``/``qvel`` and calls ``mjx.forward``, as ``MujocoEnv.set_state``
  calls ``mj_forward``.

Actions are in the model's control units (Gymnasium's action space, the actuators'
``ctrlrange``); ``action_low``/``action_high`` give the bounds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import os
from typing import Mapping

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

# mujoco.mjx prints a line at import when the optional NVIDIA Warp backend is absent,
# which it always is here (MJX's JAX backend is the one used).
with contextlib.redirect_stdout(io.StringIO()):
  from brax.envs import base as brax_base
  from mujoco import mjx
  from piekd_mjx.envs import capped
  from piekd_mjx.envs import mujoco_c

State = brax_base.State


@dataclasses.dataclass(frozen=True)
class SolverOptions:
  """MuJoCo solver settings applied on top of the Gymnasium model.

  ``None`` keeps the model's own value. The default (all ``None``) is the faithful
  setting; ``FAST`` trades parity for speed the way brax's MJX tasks do.
  """

  iterations: int | None = None  # constraint solver iterations (model: 100, Humanoid 50)
  ls_iterations: int | None = None  # line-search iterations (model: 50)
  # Friction cone, 'pyramidal' or 'elliptic' (model: pyramidal). Only the parity tests
  # change it: see docs/TASKS.md on Ant.
  cone: str | None = None
  # The solver's loops as scans of exactly iterations and ls_iterations trips
  # (``capped``): static trip counts, for accelerators.
  capped: bool = False
  # The implementation: 'jax' (MJX's own), 'warp' (MuJoCo Warp, mujoco_warp) or 'c'
  # (MuJoCo C's mj_step called from the program on a CPU backend, envs/mujoco_c.py).
  impl: str = 'jax'


FAITHFUL = SolverOptions()
FAST = SolverOptions(iterations=4, ls_iterations=8)
WARP = SolverOptions(impl='warp')
MUJOCO_C = SolverOptions(impl='c')
SOLVERS: Mapping[str, SolverOptions] = {'faithful': FAITHFUL, 'fast': FAST, 'warp': WARP,
                                        'mujoco_c': MUJOCO_C}
# The solver names a task may offer: 'capped' is the task's own ``capped_solver``.
SOLVER_NAMES = ('faithful', 'fast', 'capped', 'warp', 'mujoco_c')


def warp_missing() -> str | None:
  """Why MuJoCo Warp cannot run here (None: it can)."""
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      importlib.import_module('mujoco_warp')
  except ImportError as error:
    return (f"--solver=warp needs MuJoCo Warp, which does not import ({error}): pip "
            "install '.[warp]'")
  return None


_CONES = {'pyramidal': mujoco.mjtCone.mjCONE_PYRAMIDAL,
          'elliptic': mujoco.mjtCone.mjCONE_ELLIPTIC}


def gymnasium_asset(xml_file: str) -> str:
  """Path of an MJCF file shipped by the installed gymnasium package."""
  import gymnasium.envs.mujoco as gym_mujoco  # pylint: disable=g-import-not-at-top

  path = os.path.join(os.path.dirname(gym_mujoco.__file__), 'assets', xml_file)
  if not os.path.exists(path):
    raise FileNotFoundError(f'gymnasium ships no model {xml_file!r} (looked at {path})')
  return path


class MjxTask(brax_base.Env):
  """A Gymnasium v5 MuJoCo task on MJX. Subclasses set the class attributes and
  implement ``_observation`` and ``_reward_and_termination``."""

  xml_file: str = ''
  frame_skip: int = 1
  reset_noise_scale: float = 0.0
  # 'uniform': qvel noise is U(-s, s); 'normal': qvel noise is s * N(0, 1).
  qvel_noise: str = 'uniform'
  # Whether the observation or reward reads cfrc_ext (needs rne_postconstraint).
  uses_cfrc_ext: bool = False
  # Names of the per-step reward terms and diagnostics in State.metrics.
  metric_names: tuple[str, ...] = ()
  # The caps of --solver=capped, the smallest measured to keep parity with MuJoCo C
  # (docs/TASKS.md); None where every cap measured broke it.
  capped_solver: SolverOptions | None = None
  # Whether --solver=warp keeps parity with MuJoCo C (docs/TASKS.md): MuJoCo Warp sizes
  # its contact buffer when the data is made, for one environment here (each is made
  # inside the vmapped reset), so a batch of environments in contact overflows it.
  offers_warp: bool = False
  # Whether --solver=mujoco_c is offered: the task's observation, reward and termination
  # read qpos and qvel alone, the only fields MuJoCo C's step hands back (envs/mujoco_c.py).
  offers_mujoco_c: bool = False

  def __init__(self, solver: str | SolverOptions = 'faithful'):
    if isinstance(solver, str):
      solver = self.solver_options(solver)
    self.solver = solver
    mj_model = mujoco.MjModel.from_xml_path(gymnasium_asset(self.xml_file))
    self._adapt_model(mj_model)
    if solver.iterations is not None:
      mj_model.opt.iterations = solver.iterations
    if solver.ls_iterations is not None:
      mj_model.opt.ls_iterations = solver.ls_iterations
    if solver.cone is not None:
      mj_model.opt.cone = _CONES[solver.cone]
    self.mj_model = mj_model
    if solver.impl == 'c':
      mujoco_c.check_backend()
      self._mujoco_c = mujoco_c.Stepper(mj_model, self.frame_skip)
    # On this process's own device: put_model's default, jax.devices()[0], is process
    # 0's in a run over several processes, which the others cannot read.
    self.mjx_model = mjx.put_model(mj_model, device=jax.local_devices()[0],
                                   impl='jax' if solver.impl == 'c' else solver.impl)
    if solver.impl == 'warp' and self.uses_cfrc_ext:
      # Warp computes cfrc_ext at the end of every mj_step when asked (MJX's
      # rne_postconstraint runs on its JAX implementation only): the last step's is C's.
      opt = self.mjx_model.opt
      self.mjx_model = self.mjx_model.replace(opt=opt.replace(
          _impl=opt._impl.replace(run_rne_postconstraint=True)))  # pylint: disable=protected-access
    mj_data = mujoco.MjData(mj_model)
    self.init_qpos = jnp.asarray(mj_data.qpos, jnp.float32)
    self.init_qvel = jnp.asarray(mj_data.qvel, jnp.float32)
    ctrlrange = np.asarray(mj_model.actuator_ctrlrange, np.float32)
    self.action_low = jnp.asarray(ctrlrange[:, 0])
    self.action_high = jnp.asarray(ctrlrange[:, 1])
    self._obs_size = int(self._observation(mjx.make_data(mj_model)).shape[-1])
    # Traced once per task: every program that steps or resets it (collect, train and
    # evaluate of every trainer built on this task) reuses the trace instead of tracing
    # MJX's physics again, which costs seconds each time on a CPU. XLA inlines the call,
    # so the compiled programs are unchanged in speed.
    self._step_jit = jax.jit(self._with_solver(self._step))
    self._reset_to_jit = jax.jit(self._with_solver(self._reset_to))

  def _with_solver(self, fn):
    """``fn`` traced with the capped solver (``capped.active``) where it is chosen."""
    if not self.solver.capped:
      return fn

    def traced(*args):
      with capped.active():
        return fn(*args)

    return traced

  @classmethod
  def solver_options(cls, name: str) -> SolverOptions:
    """The ``SolverOptions`` of solver ``name`` for this task; ValueError naming what
    is valid where it is unknown or not offered."""
    if name == 'capped':
      if cls.capped_solver is None:
        raise ValueError(f"--solver=capped is not offered for {cls.__name__}: every cap "
                         "measured broke its parity with MuJoCo C (docs/TASKS.md); valid: "
                         f"{cls._offered()}")
      return cls.capped_solver
    if name not in SOLVERS:
      raise ValueError(f'--solver={name!r} is invalid: must be one of '
                       + ', '.join(SOLVER_NAMES))
    if name == 'warp' and not cls.offers_warp:
      raise ValueError(f'--solver=warp is not offered for {cls.__name__}: batched, its '
                       "steps overflow MuJoCo Warp's contact buffer and lose parity with "
                       f'MuJoCo C (docs/TASKS.md); valid: {cls._offered()}')
    if name == 'mujoco_c' and not cls.offers_mujoco_c:
      raise ValueError(f'--solver=mujoco_c is not offered for {cls.__name__}: it reads '
                       'fields of the physics besides qpos and qvel, which MuJoCo C\'s '
                       f'step does not hand back (envs/mujoco_c.py); valid: {cls._offered()}')
    missing = warp_missing() if name == 'warp' else None
    if missing:
      raise ValueError(missing)
    return SOLVERS[name]

  @classmethod
  def _offered(cls) -> str:
    """The solver names this task offers, for error messages."""
    return ', '.join(['faithful', 'fast', *['capped'] * (cls.capped_solver is not None),
                      *['warp'] * cls.offers_warp, *['mujoco_c'] * cls.offers_mujoco_c])

  def _adapt_model(self, mj_model: mujoco.MjModel) -> None:
    """Changes a model option that MJX cannot run (see Humanoid); default: none."""

  # -- the brax interface ---------------------------------------------------------------

  @property
  def dt(self) -> float:
    """Seconds of simulated time per environment step."""
    return float(self.mj_model.opt.timestep) * self.frame_skip

  @property
  def observation_size(self) -> int:
    return self._obs_size

  @property
  def action_size(self) -> int:
    return int(self.mj_model.nu)

  @property
  def backend(self) -> str:
    return 'mjx'

  def reset(self, rng: jax.Array) -> State:
    """Gymnasium's ``reset_model``: the initial pose plus reset noise."""
    return self.reset_to(*self.sample_initial_state(rng))

  def sample_initial_state(self, rng: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The ``(qpos, qvel)`` that ``reset(rng)`` starts from: the model's initial pose
    plus Gymnasium's reset noise (no physics runs)."""
    key_qpos, key_qvel = jax.random.split(rng)
    scale = self.reset_noise_scale
    qpos = self.init_qpos + jax.random.uniform(
        key_qpos, self.init_qpos.shape, minval=-scale, maxval=scale)
    if self.qvel_noise == 'normal':
      qvel = self.init_qvel + scale * jax.random.normal(key_qvel, self.init_qvel.shape)
    else:
      qvel = self.init_qvel + jax.random.uniform(
          key_qvel, self.init_qvel.shape, minval=-scale, maxval=scale)
    return qpos, qvel

  def reset_to(self, qpos: jax.Array, qvel: jax.Array) -> State:
    """Starts an episode from a given physical state (Gymnasium's ``set_state``)."""
    return self._reset_to_jit(qpos, qvel)

  def step(self, state: State, action: jax.Array) -> State:
    """Gymnasium's ``step``: ``frame_skip`` physics steps under ``ctrl = action``."""
    return self._step_jit(state, action)

  def _reset_to(self, qpos: jax.Array, qvel: jax.Array) -> State:
    if self.solver.impl == 'warp':  # Warp's takes the C model
      data = mjx.make_data(self.mj_model, impl='warp')
    else:
      data = mjx.make_data(self.mjx_model)
    qpos = jnp.asarray(qpos, jnp.float32)
    data = data.replace(qpos=qpos, qvel=jnp.asarray(qvel, jnp.float32))
    if self.solver.impl == 'c':
      # mj_step computes every field it needs from qpos, qvel and ctrl: no forward.
      return self._initial_state(data)
    # mjx.forward writes normalised free-joint quaternions back into qpos; mj_forward
    # does not, so Gymnasium's first observation holds qpos as set. Keep it.
    data = mjx.forward(self.mjx_model, data).replace(qpos=qpos)
    return self._initial_state(data)

  def _initial_state(self, data: mjx.Data) -> State:
    zero = jnp.zeros((), jnp.float32)
    metrics = {name: zero for name in self.metric_names}
    return State(pipeline_state=data, obs=self._observation(data), reward=zero,
                 done=zero, metrics=metrics, info={})

  def _step(self, state: State, action: jax.Array) -> State:
    data0 = state.pipeline_state
    data = data0.replace(ctrl=jnp.asarray(action, jnp.float32))
    if self.solver.impl == 'c':
      data = self._mujoco_c.step(data)
    else:
      data = jax.lax.fori_loop(
          0, self.frame_skip, lambda _, d: mjx.step(self.mjx_model, d), data)
    if self.uses_cfrc_ext and self.solver.impl == 'jax':
      data = mjx.rne_postconstraint(self.mjx_model, data)
    obs = self._observation(data)
    reward, terminated, metrics = self._reward_and_termination(data0, data, action, obs)
    # Keep metrics that wrappers added (brax's EpisodeWrapper adds 'reward').
    metrics = {**state.metrics, **{k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}}
    return state.replace(pipeline_state=data, obs=obs,
                         reward=jnp.asarray(reward, jnp.float32),
                         done=jnp.asarray(terminated, jnp.float32), metrics=metrics)

  # -- what a task defines -------------------------------------------------------------

  def _observation(self, data: mjx.Data) -> jax.Array:
    raise NotImplementedError

  def _reward_and_termination(self, data0: mjx.Data, data: mjx.Data, action: jax.Array,
                              obs: jax.Array):
    """Returns (reward, terminated, metrics) for the step from ``data0`` to ``data``."""
    raise NotImplementedError


def state_vector(data: mjx.Data) -> jax.Array:
  """Gymnasium's ``MujocoEnv.state_vector``: concat(qpos, qvel)."""
  return jnp.concatenate([data.qpos, data.qvel])


# MJX 3.17 keeps some fields among its JAX implementation's, ``data._impl``; reading
# them from ``Data`` itself is deprecated (a DeprecationWarning on every trace).


def cfrc_ext(data: mjx.Data) -> jax.Array:
  """The external contact forces of every body [nbody, 6] (after
  ``mjx.rne_postconstraint``)."""
  return data._impl.cfrc_ext  # pylint: disable=protected-access


def cinert(data: mjx.Data) -> jax.Array:
  """The com-based inertia of every body [nbody, 10]."""
  return data._impl.cinert  # pylint: disable=protected-access


def control_cost(weight: float, action: jax.Array) -> jax.Array:
  return weight * jnp.sum(jnp.square(action))


