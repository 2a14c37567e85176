"""The machine, software versions and date of a benchmark run (benchmarks/*.py)."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from typing import Any, Sequence

import jax


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo, or '' where there is none."""
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return ''


def git_revision() -> str:
  """The repository's HEAD commit, with '+dirty' when the tree has changes."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=root, check=True,
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain'], cwd=root, check=True,
                           capture_output=True, text=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return ''
  return head + ('+dirty' if dirty else '')


def machine_info(packages: Sequence[str]) -> dict[str, Any]:
  """The machine, the versions of ``packages`` and the date of a run."""
  versions = {}
  for package in packages:
    try:
      versions[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      versions[package] = None
  return {
      'processor': platform.processor(),
      'cpu_model': cpu_model(),
      'cpu_count': os.cpu_count(),
      'platform': platform.platform(),
      'python': platform.python_version(),
      'jax_devices': [str(d) for d in jax.devices()],
      'versions': versions,
      'git_revision': git_revision(),
      'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
  }
