"""MJX's constraint solver with static trip counts, for accelerators.

MJX's solver (``mujoco/mjx/_src/solver.py``, ``solve``) iterates in a ``lax.while_loop``
until it converges or reaches ``opt.iterations``, and the line search of each iteration
is a ``lax.scan`` of ``opt.ls_iterations`` trips, each a ``lax.cond`` that skips the
trips after the search has converged. On a GPU, XLA copies each such loop predicate and
branch index to the host (docs/SCALING.md). ``solve`` here runs the same iterations as
scans of exactly ``opt.iterations`` and ``opt.ls_iterations`` trips in which a trip after
convergence keeps its input by select: MJX's arithmetic, static trip counts, no
conditional. The caps are the model's ``iterations`` and ``ls_iterations``
(``base.SolverOptions``); where a solve would need more, it stops at the cap, as MJX's
own loop does.

MJX reaches its solver through its module (``solver.solve``, ``_while_loop_scan``), so
importing this module puts a dispatcher in each place: it runs the capped version while
``active()`` is entered in the tracing thread (a context variable, so a thread tracing
another task at the same time gets MJX's own), and MJX's otherwise.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import mujoco
from mujoco.mjx._src import math as mjx_math
from mujoco.mjx._src import solver as mjx_solver
from mujoco.mjx._src.types import DisableBit
from mujoco.mjx._src.types import SolverType

_ACTIVE = contextvars.ContextVar('piekd_mjx_capped_solver', default=False)
_MJX_SOLVE = getattr(mjx_solver.solve, '__wrapped__', mjx_solver.solve)
_MJX_LOOP = getattr(mjx_solver._while_loop_scan, '__wrapped__',  # pylint: disable=protected-access
                    mjx_solver._while_loop_scan)  # pylint: disable=protected-access


@contextlib.contextmanager
def active() -> Iterator[None]:
  """MJX's solves traced in this thread while entered have static trip counts."""
  token = _ACTIVE.set(True)
  try:
    yield
  finally:
    _ACTIVE.reset(token)


def scan_select(cond_fun: Callable[[Any], jax.Array], body_fun: Callable[[Any], Any],
                init_val: Any, max_iter: int) -> Any:
  """``while cond_fun(val): val = body_fun(val)``, at most ``max_iter`` times, as a scan
  of ``max_iter`` trips: a trip whose input fails ``cond_fun`` returns it unchanged."""

  def trip(val, _):
    go = cond_fun(val)
    return jax.tree.map(lambda new, old: jnp.where(go, new, old), body_fun(val), val), None

  return jax.lax.scan(trip, init_val, None, length=max_iter)[0]


def _line_search_loop(cond_fun, body_fun, init_val, max_iter):
  if _ACTIVE.get():
    return scan_select(cond_fun, body_fun, init_val, max_iter)
  return _MJX_LOOP(cond_fun, body_fun, init_val, max_iter)


def _solve(m, d):
  """MJX's ``solve``, its iterations a ``scan_select`` of ``m.opt.iterations`` trips while
  ``active()``."""
  if not _ACTIVE.get():
    return _MJX_SOLVE(m, d)
  if not isinstance(m.opt._impl, mjx_solver.OptionJAX):  # pylint: disable=protected-access
    raise ValueError('solve requires JAX backend implementation.')

  def cond(ctx):
    rescale = mjx_solver._rescale  # pylint: disable=protected-access
    improvement = rescale(m, d, ctx.prev_cost - ctx.cost)
    gradient = rescale(m, d, mjx_math.norm(ctx.grad))
    done = ctx.solver_niter >= m.opt.iterations
    done |= improvement < m.opt.tolerance
    done |= gradient < m.opt.tolerance
    return ~done

  def body(ctx):
    ctx = mjx_solver._linesearch(m, d, ctx)  # pylint: disable=protected-access
    prev_grad, prev_mgrad = ctx.grad, ctx.Mgrad
    ctx = mjx_solver._update_constraint(m, d, ctx)  # pylint: disable=protected-access
    ctx = mjx_solver._update_gradient(m, d, ctx)  # pylint: disable=protected-access
    if m.opt.solver == SolverType.NEWTON:
      search = -ctx.Mgrad
    else:  # Polak-Ribiere
      beta = jnp.dot(ctx.grad, ctx.Mgrad - prev_mgrad)
      beta = beta / jnp.maximum(mujoco.mjMINVAL, jnp.dot(prev_grad, prev_mgrad))
      search = -ctx.Mgrad + jnp.maximum(0, beta) * ctx.search
    return ctx.replace(search=search, solver_niter=ctx.solver_niter + 1)

  qacc = d.qacc_smooth  # warm start, as MJX
  if not m.opt.disableflags & DisableBit.WARMSTART:
    warm = mjx_solver.Context.create(m, d.replace(qacc=d.qacc_warmstart), grad=False)
    smooth = mjx_solver.Context.create(m, d.replace(qacc=d.qacc_smooth), grad=False)
    qacc = jnp.where(warm.cost < smooth.cost, d.qacc_warmstart, d.qacc_smooth)
  d = d.replace(qacc=qacc)
  ctx = mjx_solver.Context.create(m, d)
  if m.opt.iterations == 1:
    ctx = body(ctx)
  else:
    ctx = scan_select(cond, body, ctx, int(m.opt.iterations))
  return d.tree_replace({'qfrc_constraint': ctx.qfrc_constraint, 'qacc': ctx.qacc,
                         '_impl.efc_force': ctx.efc_force})


_solve.__wrapped__ = _MJX_SOLVE
_line_search_loop.__wrapped__ = _MJX_LOOP
mjx_solver.solve = _solve
mjx_solver._while_loop_scan = _line_search_loop  # pylint: disable=protected-access
