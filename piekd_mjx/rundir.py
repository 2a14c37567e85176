"""The layout of a run directory, and what ``--overwrite`` may delete.

A run of this program writes only the entries named here into its directory.
``check_replaceable`` lets ``--overwrite`` delete a directory only when it is such a
run: its ``config.json`` holds a run's config and every entry is one a run writes.
Anything else (a user's files beside a run, the current directory, one of its
parents, the home directory) is refused, and nothing is touched.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil

from piekd_mjx import config as config_lib

CONFIG_FILE = 'config.json'
METRICS_FILE = 'metrics.jsonl'
LOG_FILE = 'run.log'
LOCK_FILE = 'run.lock'  # held by the sweep that trains the run (sweep.py)
TENSORBOARD_DIR = 'tensorboard'
CHECKPOINTS = 'checkpoints'
CORRUPT = 'checkpoints.corrupt'
GROUP_FILE = 'group.json'  # a group's directory: the run directories of its lanes
# The prefix of the directory by which a process probes that it can write (created and
# removed at once; resources.check_writable): another process may see one for a moment.
WRITE_PROBE = '.piekd-write-test-'

# Entries a run writes, by exact name and by pattern (temporary files of atomic writes,
# the copies of metrics.jsonl that a resume keeps).
_FILES = frozenset({CONFIG_FILE, METRICS_FILE, LOG_FILE, LOCK_FILE})
_DIRECTORIES = frozenset({TENSORBOARD_DIR, CHECKPOINTS, CORRUPT})
_PATTERNS = (re.compile(r'config\.json(\.\d+)?\.tmp'),
             re.compile(r'metrics\.jsonl((\.\d+)?\.tmp|\.before-resume-\d+)'))


def read_config(run_dir: str) -> config_lib.Config:
  """The ``Config`` of ``run_dir``'s ``config.json``; raises OSError, ValueError or
  TypeError when it is missing or does not read."""
  with open(os.path.join(run_dir, CONFIG_FILE), encoding='utf-8') as f:
    return config_lib.from_dict(json.load(f))


def checkpoint_steps(checkpoints: str) -> list[int]:
  """The steps of the checkpoints in the directory ``checkpoints``, oldest first (none
  where it does not exist)."""
  names = os.listdir(checkpoints) if os.path.isdir(checkpoints) else []
  return sorted(int(n) for n in names if n.isdigit())


# The keys of a run's config.json: Config's fields, and those of older versions.
_CONFIG_KEYS = frozenset(f.name for f in dataclasses.fields(config_lib.Config)) | {
    'first_distill_step'}


class NotARunError(ValueError):
  """The directory is not one ``--overwrite`` may replace; the message says why."""


def _is_run_entry(run_dir: str, name: str) -> bool:
  path = os.path.join(run_dir, name)
  if os.path.islink(path):
    return False
  if name in _DIRECTORIES:
    return os.path.isdir(path)
  if name in _FILES or any(p.fullmatch(name) for p in _PATTERNS):
    return os.path.isfile(path)
  return False


def _protected(path: str) -> str | None:
  """Why ``path`` (absolute, resolved) must never be deleted, or None."""
  cwd = os.path.realpath(os.getcwd())
  home = os.path.realpath(os.path.expanduser('~'))
  if path == os.path.dirname(path):
    return 'it is the file system root'
  if path == cwd or cwd.startswith(path + os.sep):
    return 'it is the current directory or one of its parents'
  if path == home or home.startswith(path + os.sep):
    return 'it is the home directory or one of its parents'
  return None


def entries(run_dir: str) -> list[str]:
  """The names in ``run_dir``, sorted, less the write probes of other processes."""
  return sorted(n for n in os.listdir(run_dir) if not n.startswith(WRITE_PROBE))


def check_replaceable(run_dir: str) -> None:
  """Raises NotARunError unless ``run_dir`` is missing, empty, or holds a run of this
  program and nothing else, so that ``--overwrite`` may delete it."""
  flag = f'--out_dir={run_dir!r} --overwrite'
  if os.path.islink(run_dir):
    raise NotARunError(f'{flag}: it is a symbolic link; name the run directory itself')
  if not os.path.exists(run_dir):
    return
  if not os.path.isdir(run_dir):
    raise NotARunError(f'{flag}: it is a file, not a run directory')
  why = _protected(os.path.realpath(run_dir))
  if why:
    raise NotARunError(f'{flag} would delete {os.path.realpath(run_dir)}, and {why}; '
                       'name the run directory itself')
  names = entries(run_dir)
  if not names:
    return
  config_path = os.path.join(run_dir, CONFIG_FILE)
  try:
    with open(config_path, encoding='utf-8') as f:
      values = json.load(f)
    if not isinstance(values, dict) or not {'env', 'variant'} <= set(values) <= _CONFIG_KEYS:
      raise ValueError('not the config of a run')
  except (OSError, ValueError) as e:
    detail = ('no config.json' if not os.path.exists(config_path)
              else f'its config.json is not a run\'s ({e})')
    raise NotARunError(f'{flag}: it does not hold a run of piekd_mjx ({detail}); only '
                       'a run directory can be replaced') from None
  foreign = [name for name in names if not _is_run_entry(run_dir, name)]
  if foreign:
    shown = ', '.join(foreign[:3]) + (f' and {len(foreign) - 3} more' if len(foreign) > 3
                                      else '')
    raise NotARunError(f'{flag}: it holds {shown}, which no run writes; move them out '
                       'or choose another directory')


def replace(run_dir: str) -> None:
  """Deletes the run in ``run_dir`` (checked again with ``check_replaceable``)."""
  check_replaceable(run_dir)
  if os.path.isdir(run_dir):
    shutil.rmtree(run_dir)
