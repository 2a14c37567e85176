"""Shared test set-up: JAX's persistent compilation cache, so MJX steps compiled once
are reused across test runs and processes."""

import os

import jax
import pytest

jax.config.update(
    'jax_compilation_cache_dir',
    os.environ.get('PIEKD_JAX_CACHE', os.path.expanduser('~/.cache/piekd_mjx/jax')))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', -1)


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
