"""Shared test set-up: JAX's persistent compilation cache, so MJX steps compiled once
are reused across test runs and processes, and room for each worker's executables."""

import os
import shutil

# JAX puts the path of XLA's GPU autotuning cache, a folder inside the compilation
# cache, into every program's cache key (jax 0.10: compiler.get_compile_options), so a
# copy of the cache at another path (killable_cache) would hit none of its entries.
# Without that cache (nothing on a CPU) the keys do not name the folder; the
# environment variable reaches the CLI processes the tests start.
os.environ['JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES'] = 'none'

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest

from piekd_mjx import executables  # pylint: disable=wrong-import-position

jax.config.update(
    'jax_compilation_cache_dir',
    os.environ.get('PIEKD_JAX_CACHE', os.path.expanduser('~/.cache/piekd_mjx/jax')))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', -1)
jax.config.update('jax_persistent_cache_enable_xla_caches', 'none')


@pytest.fixture(autouse=True)
def room_for_executables():
  """After each test, frees the worker's compiled executables when it holds a third
  of the memory mappings a process may: a worker that keeps every program of the tests
  it ran passes the limit (piekd_mjx.executables) and crashes inside XLA."""
  yield
  executables.release_if_crowded()


@pytest.fixture(scope='session')
def task_cache():
  """Tasks built once per session: building one puts its model on the device."""
  from piekd_mjx import envs  # pylint: disable=g-import-not-at-top

  cache = {}

  def get(name, solver='faithful'):
    if (name, solver) not in cache:
      cache[(name, solver)] = envs.make(name, solver=solver)
    return cache[(name, solver)]

  return get


@pytest.fixture
def killable_cache(tmp_path):
  """The flag that gives a process the test may SIGKILL a copy of the persistent cache:
  JAX writes an entry in place, so a kill during a write would leave a truncated entry
  that crashes every later reader of the shared cache."""
  source = jax.config.jax_compilation_cache_dir
  target = tmp_path / 'killable-jax-cache'
  if source and os.path.isdir(source):
    shutil.copytree(source, target, ignore=shutil.ignore_patterns('.lockfile'))
  return f'--jax_cache_dir={target}'
