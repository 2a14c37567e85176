"""MuJoCo C's plane-capsule contact frame, as a collider for MJX's collision driver.

MuJoCo C (``mjc_PlaneCapsule``, then ``mju_makeFrame``) takes a plane-capsule contact's
first tangent as the capsule's axis projected onto the plane, normalised, however steep
the capsule; only an axis exactly along the normal, whose projection is zero, falls back
to (1, 0, 0) (``mju_normalize3`` of a zero vector). MJX 3.17's ``plane_capsule`` keeps
that tangent only while the projection's norm is at least 0.5 and otherwise takes the
world y (or z) axis, so a capsule within 30° of the normal gets a different frame.
Under a pyramidal friction cone the pyramid's edges follow the frame, so the contact
forces differ (docs/TASKS.md, "MJX's plane-capsule contact frame").

``c_plane_capsule()`` installs :func:`plane_capsule` in MJX's collider table for as
long as the context lasts; a task traces its physics inside it, so its compiled step
carries C's frame and every other program keeps MJX's own collider.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import jax
import jax.numpy as jnp
import mujoco
from mujoco.mjx._src import collision_driver
from mujoco.mjx._src import collision_primitive
from mujoco.mjx._src.collision_types import Collision
from mujoco.mjx._src.collision_types import GeomInfo
from mujoco.mjx._src.types import GeomType

_PLANE_CAPSULE = (GeomType.PLANE, GeomType.CAPSULE)


def c_contact_frame(normal: jax.Array, axis: jax.Array) -> jax.Array:
  """The frame [3, 3] (rows: normal, first and second tangent) MuJoCo C gives a contact
  of ``normal`` with a capsule along ``axis``."""
  tangent = axis - normal * jnp.dot(normal, axis)
  norm = jnp.linalg.norm(tangent)
  degenerate = norm < mujoco.mjMINVAL
  tangent = jnp.where(degenerate, jnp.array([1.0, 0.0, 0.0], tangent.dtype),
                      tangent / jnp.where(degenerate, 1.0, norm))
  return jnp.stack([normal, tangent, jnp.cross(normal, tangent)])


@collision_primitive.collider(ncon=2)
def plane_capsule(plane: GeomInfo, cap: GeomInfo) -> Collision:
  """MJX's plane-capsule collider (two contacts, one per end sphere) with C's frame."""
  normal, axis = plane.mat[:, 2], cap.mat[:, 2]
  frame = c_contact_frame(normal, axis)[None]
  segment = axis * cap.size[1]
  dists, points = [], []
  for end in (cap.pos + segment, cap.pos - segment):
    dist, pos = collision_primitive._plane_sphere(  # pylint: disable=protected-access
        normal, plane.pos, end, cap.size[0])
    dists.append(dist[None])
    points.append(pos[None])
  return jnp.concatenate(dists), jnp.concatenate(points), jnp.concatenate([frame, frame])


@contextlib.contextmanager
def c_plane_capsule() -> Iterator[None]:
  """MJX collides planes with capsules by :func:`plane_capsule` inside the context."""
  table = collision_driver._COLLISION_FUNC  # pylint: disable=protected-access
  previous = table[_PLANE_CAPSULE]
  table[_PLANE_CAPSULE] = plane_capsule
  try:
    yield
  finally:
    table[_PLANE_CAPSULE] = previous


class CContactFrame:
  """A task mixin (before ``base.MjxTask`` in the bases): the task's reset and step are
  traced inside ``c_plane_capsule()``, so its compiled programs carry C's frame."""

  def _reset_to(self, qpos, qvel):
    with c_plane_capsule():
      return super()._reset_to(qpos, qvel)

  def _step(self, state, action):
    with c_plane_capsule():
      return super()._step(state, action)
