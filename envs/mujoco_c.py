"""``--solver=mujoco_c``: a task's physics stepped by MuJoCo C inside the jitted program.

On a CPU backend the program's device is the host, so MuJoCo C's ``mj_step`` called
through ``jax.pure_callback`` leaves nothing to copy: the callback reads the batch of
states the program hands it, steps each with the same model Gymnasium steps (float64,
MuJoCo's own solver), and returns them, several times faster than MJX's JAX
implementation on a CPU (docs/BENCHMARKS.md). On an accelerator every call would be a
round trip to the host, so the option is for CPU backends only (``check_backend``).

What the callback carries is the physical state that ``mj_step`` reads and writes:
``qpos``, ``qvel``, ``qacc_warmstart`` (the solver's starting point, so that a
trajectory solves as C's does), ``time``, under ``ctrl``. The other fields of the MJX
``Data`` (positions of bodies, contacts, forces) are not computed, so only the tasks
whose observation, reward and termination read ``qpos`` and ``qvel`` alone offer it
(``MjxTask.offers_mujoco_c``).
"""

from __future__ import annotations

import queue

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

# The MJX Data fields that one step reads and writes, in the callback's order.
FIELDS = ('qpos', 'qvel', 'qacc_warmstart', 'time')


def check_backend() -> None:
  """ValueError unless JAX's default backend is the CPU (the callback runs on the host)."""
  backend = jax.default_backend()
  if backend != 'cpu':
    raise ValueError(f'--solver=mujoco_c steps MuJoCo C on the host and runs on a CPU '
                     f'backend only (this one is {backend}); valid here: faithful, fast, '
                     'capped, warp where the task offers them')


class Stepper:
  """``frame_skip`` calls of ``mj_step`` on ``mj_model`` for a batch of states.

  Training and evaluation call it from two threads at once, each call with an
  ``MjData`` of its own from a pool the stepper owns. Not ``threading.local``: XLA runs
  callbacks on its worker threads and drops their Python thread state after each call,
  and an ``MjData`` freed then, without a thread state, segfaults inside MuJoCo."""

  def __init__(self, mj_model: mujoco.MjModel, frame_skip: int):
    self.mj_model = mj_model
    self.frame_skip = frame_skip
    self.sizes = (mj_model.nq, mj_model.nv, mj_model.nv, 1)  # FIELDS, packed
    self._pool = queue.SimpleQueue()  # MjData not in use

  def _take(self) -> mujoco.MjData:
    try:
      return self._pool.get_nowait()
    except queue.Empty:
      return mujoco.MjData(self.mj_model)

  def host_step(self, state, ctrl):
    """Steps every state of the batch (``FIELDS`` concatenated on the last axis, any
    leading shape) under ``ctrl``; returns the new states alike, in the input's dtype."""
    state, ctrl = np.asarray(state), np.asarray(ctrl)
    flat = state.reshape(-1, state.shape[-1])
    ctrl = ctrl.reshape(-1, ctrl.shape[-1])
    out = np.empty_like(flat)
    nq, nv = self.mj_model.nq, self.mj_model.nv
    data = self._take()
    try:
      for i, row in enumerate(flat):
        data.qpos[:], data.qvel[:] = row[:nq], row[nq:nq + nv]
        data.qacc_warmstart[:], data.time = row[nq + nv:-1], row[-1]
        data.ctrl[:] = ctrl[i]
        for _ in range(self.frame_skip):
          mujoco.mj_step(self.mj_model, data)
        out[i] = np.concatenate([data.qpos, data.qvel, data.qacc_warmstart, [data.time]])
    finally:
      self._pool.put(data)
    return out.reshape(state.shape)

  def step(self, data):
    """The MJX ``data`` after ``frame_skip`` steps of MuJoCo C under its ``ctrl`` (only
    ``FIELDS`` and ``ctrl`` are meaningful); the fields go to the host packed in one
    array [..., nq + 2 nv + 1] and come back alike."""
    state = jnp.concatenate([jnp.atleast_1d(getattr(data, name)) for name in FIELDS])
    state = jax.pure_callback(self.host_step, jax.ShapeDtypeStruct(state.shape, state.dtype),
                              state, data.ctrl, vmap_method='broadcast_all')
    qpos, qvel, warmstart, time = jnp.split(state, np.cumsum(self.sizes)[:-1])
    return data.replace(qpos=qpos, qvel=qvel, qacc_warmstart=warmstart, time=time[0])
