"""The compiled executables a process holds, kept within what the OS lets it map.

On a CPU every kernel of a live XLA executable holds about three memory mappings of
its own (code, constants, data; docs/BENCHMARKS.md counts them per program). A Linux
process may hold at most ``vm.max_map_count`` mappings (65,530 by default), and past
that every allocation that maps memory fails: XLA aborts or segfaults while compiling,
loading or serialising its next executable. A process that builds many programs (a
sweep over tasks and variants, the test suite) therefore frees JAX's compiled
executables between them when it holds more than its share; the programs stay defined
and compile again, or load from the persistent compilation cache, when next called. An
accelerator's executables live on the device and hold few host mappings, so there this
never fires.
"""

import gc

import jax

_MAPS = '/proc/self/maps'
_LIMIT = '/proc/sys/vm/max_map_count'


def mappings() -> int | None:
  """The memory mappings this process holds now; None where the OS does not say."""
  try:
    with open(_MAPS, 'rb') as f:
      return sum(1 for _ in f)
  except OSError:
    return None


def mapping_limit() -> int | None:
  """The most memory mappings a process may hold (``vm.max_map_count``); None where the
  OS does not say."""
  try:
    with open(_LIMIT) as f:
      return int(f.read())
  except (OSError, ValueError):
    return None


def release() -> None:
  """Frees every executable JAX has compiled in this process (``jax.clear_caches``);
  jitted functions stay valid and compile again at their next call."""
  jax.clear_caches()
  gc.collect()


def release_if_crowded(share: float = 1 / 3) -> bool:
  """``release()`` if this process holds more than ``share`` of its mapping limit, so
  that the next program (one program never needs a third) has room; returns whether
  it released."""
  held, limit = mappings(), mapping_limit()
  if held is None or limit is None or held <= share * limit:
    return False
  release()
  return True

