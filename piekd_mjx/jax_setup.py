"""A process's JAX set-up, shared by the launcher and the sweep: the persistent
compilation cache, and XLA's command buffers on a GPU.

On a GPU, XLA copies the predicate of every loop whose trip count it does not know, and
the branch index of every conditional, to the host before it goes on (docs/SCALING.md).
With command buffers for ``WHILE`` and ``CONDITIONAL``, XLA records such loops and
conditionals into CUDA graphs that decide on the device. XLA reads the flag when its
backend starts, so ``command_buffers`` must run before anything touches a device; a CPU
ignores it.
"""

from __future__ import annotations

import os

COMMAND_BUFFER_FLAG = '--xla_gpu_enable_command_buffer=+WHILE,+CONDITIONAL'
DEFAULT_CACHE_DIR = os.path.expanduser('~/.cache/piekd_mjx/jax')


def define_flags(flag_values) -> None:
  """The launcher's and the sweep's flags of this set-up."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string('jax_cache_dir', DEFAULT_CACHE_DIR,
                      "JAX's persistent compilation cache ('' to disable).",
                      flag_values=flag_values)
  flags.DEFINE_bool('command_buffers', False,
                    "On a GPU, run XLA's loops and conditionals inside CUDA graphs ("
                    f'{COMMAND_BUFFER_FLAG}), so that they decide on the device instead '
                    'of waiting on the host; a CPU ignores it.', flag_values=flag_values)


def command_buffers() -> None:
  """Appends ``COMMAND_BUFFER_FLAG`` to ``XLA_FLAGS``; RuntimeError if a JAX backend has
  already started (it would not read it)."""
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  if xla_bridge.backends_are_initialized():
    raise RuntimeError('command_buffers() after a JAX backend started: XLA would not read '
                       'the flag')
  os.environ['XLA_FLAGS'] = with_command_buffers(os.environ.get('XLA_FLAGS', ''))


def with_command_buffers(xla_flags: str) -> str:
  """``xla_flags`` (an ``XLA_FLAGS`` value) with ``COMMAND_BUFFER_FLAG``, added once."""
  if COMMAND_BUFFER_FLAG in xla_flags.split():
    return xla_flags
  return f'{xla_flags} {COMMAND_BUFFER_FLAG}'.strip()


def compilation_cache(directory: str) -> None:
  """JAX's persistent compilation cache in ``directory`` (none if empty), keeping every
  program that took at least a second to compile."""
  if not directory:
    return
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_compilation_cache_dir', directory)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)


def from_flags(flag_values) -> None:
  """``command_buffers`` (if asked for) and ``compilation_cache`` from the flags."""
  if flag_values.command_buffers:
    command_buffers()
  compilation_cache(flag_values.jax_cache_dir)
