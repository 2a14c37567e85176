"""Measures the parity errors of every task against Gymnasium (MuJoCo C).

    python benchmarks/parity.py --tasks=hopper,ant --steps=200 --seeds=0,1,2

For each task and solver setting, runs Gymnasium trajectories of random actions and
reports the largest error of the MJX step from each visited state (see
``piekd_mjx.envs.parity``): the scaled observation error, the absolute reward and
reward-term errors, the scaled error of the whole physical state after the step
(``qpos`` and ``qvel``, the parts the observation hides included), and termination
mismatches. ``--settings`` picks the solver settings: 'faithful', 'fast', 'elliptic'
(Ant only), 'warp' (MuJoCo Warp's implementation of MJX) and 'capped-I/L', the capped
solver (``piekd_mjx.envs.capped``) of I iterations and L line-search trips. For Ant it
also measures each setting but 'elliptic' from states with a leg within 30° of vertical
on the floor
(``parity.steep_capsule_states``, one set per seed, ``--steps`` states each), the
states where MJX's own plane-capsule collider and MuJoCo C build different contact
frames. Prints a Markdown table for docs/TASKS.md and writes the numbers as JSON.
"""

import datetime
import json
import os
import platform
import sys

from absl import app
from absl import flags

_TASKS = flags.DEFINE_list('tasks', None, 'Tasks to measure (default: all).')
_STEPS = flags.DEFINE_integer('steps', 200, 'Steps per Gymnasium trajectory.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Trajectory seeds.')
_OUT = flags.DEFINE_string('out', 'docs/benchmarks/parity.json', 'JSON output.')
_SETTINGS = flags.DEFINE_list(
    'settings', ['faithful', 'fast', 'elliptic'],
    'Solver settings: faithful, fast, elliptic (Ant only), warp, mujoco_c, capped-I/L (I '
    'solver iterations, L line-search trips, as loops of static trip count).')

# Tasks also measured from steep-leg states (a free root over a floor of capsule legs).
STEEP_TASKS = ('ant',)


def write(results: list[dict]) -> None:
  """The rows so far and how they were measured, as JSON in ``--out``."""
  meta = {'command': ' '.join(['python'] + sys.argv), 'date': datetime.date.today().isoformat(),
          'machine': f'{platform.machine()}, {os.cpu_count()} cores',
          'steps_per_seed': _STEPS.value, 'seeds': _SEEDS.value}
  os.makedirs(os.path.dirname(_OUT.value) or '.', exist_ok=True)
  from piekd_mjx import files  # pylint: disable=g-import-not-at-top
  files.write_atomic(_OUT.value, json.dumps({'meta': meta, 'results': results}, indent=2))


def setting(label: str):
  """(SolverOptions, Gymnasium's cone override) of a ``--settings`` label."""
  from piekd_mjx.envs import base  # pylint: disable=g-import-not-at-top
  if label in base.SOLVERS:  # faithful, fast, warp, mujoco_c
    return base.SOLVERS[label], None
  if label == 'elliptic':
    return base.SolverOptions(cone='elliptic'), 'elliptic'
  try:
    kind, caps = label.split('-')
    iterations, ls_iterations = map(int, caps.split('/'))
    if kind != 'capped' or iterations < 1 or ls_iterations < 1:
      raise ValueError
  except ValueError:
    raise app.UsageError(f'--settings={label!r} is invalid: must be faithful, fast, '
                         'elliptic, warp, mujoco_c or capped-I/L (positive integers)') from None
  return base.SolverOptions(iterations=iterations, ls_iterations=ls_iterations,
                            capped=True), None


def main(argv):
  del argv
  from piekd_mjx import envs  # pylint: disable=g-import-not-at-top
  from piekd_mjx import executables  # pylint: disable=g-import-not-at-top
  from piekd_mjx.envs import parity  # pylint: disable=g-import-not-at-top

  settings = {label: setting(label) for label in _SETTINGS.value}
  results = []
  for name in _TASKS.value or envs.names():
    rows = [(label, 'trajectory') for label in settings if label != 'elliptic' or name == 'ant']
    rows += [(label, 'steep legs') for label in settings
             if name in STEEP_TASKS and label != 'elliptic']
    tasks = {}
    for label, states in rows:
      solver, cone = settings[label]
      task = tasks.setdefault(label, envs.make(name, solver=solver))
      worst: dict[str, float] = {}
      for seed in _SEEDS.value:
        steep = (parity.steep_capsule_states(name, _STEPS.value, seed=int(seed))
                 if states == 'steep legs' else None)
        ref = parity.gymnasium_reference(name, _STEPS.value, seed=int(seed), cone=cone,
                                         states=steep)
        for k, v in parity.errors(task, ref).items():
          worst[k] = max(worst.get(k, 0.0), v)
      terms = {k: worst[k] for k in task.metric_names}  # reward terms and diagnostics
      row = {'task': name, 'setting': label, 'states': states, 'obs': worst['obs'],
             'state': worst['state'], 'reward': worst['reward'],
             'worst_term': max(terms.values()) if terms else 0.0,
             'termination_mismatches': worst['termination_mismatches'], 'terms': terms}
      results.append(row)
      print(f"{name:18s} {label:9s} {states:10s} obs {row['obs']:.2e}  state "
            f"{row['state']:.2e}  reward "
            f"{row['reward']:.2e}  worst term {row['worst_term']:.2e}  termination "
            f"mismatches {int(row['termination_mismatches'])}", flush=True)
      write(results)  # as they come, so a cut run keeps them
    # Every setting is a program of its own: a process that kept them all would pass
    # the memory mappings the OS allows it (piekd_mjx.executables).
    parity._steps_program.cache_clear()  # pylint: disable=protected-access
    executables.release()
  print('\n| task | solver | states | obs (scaled) | state (scaled) | reward | '
        'worst reward term | termination mismatches |')
  print('|---|---|---|---|---|---|---|---|')
  for r in results:
    print(f"| {r['task']} | {r['setting']} | {r['states']} | {r['obs']:.1e} | "
          f"{r['state']:.1e} | "
          f"{r['reward']:.1e} | "
          f"{r['worst_term']:.1e} | {int(r['termination_mismatches'])} |")


if __name__ == '__main__':
  app.run(main)
