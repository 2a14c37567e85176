"""The report's agents: a filmstrip of each arm's best member at its final checkpoint.

For each task and arm of a figure whose run keeps a checkpoint, the agent shown is the
member with the highest return at that checkpoint's evaluation, over every seed
(``policy.load(run, seed, 'best')``). Its first episode on Gymnasium's task (MuJoCo C,
episode seed 0) is rendered offscreen and a few frames side by side make a PNG
(``play.write_filmstrip``). Which agent is shown, and its evaluation return, come from
the run's records, so ``REPORT.md`` reads the same whether or not the pictures are
drawn; a machine without an OpenGL backend writes the reason instead of the pictures.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from piekd_mjx import records as records_lib
from piekd_mjx import rundir

FRAME_SIZE = (240, 180)  # width, height of each frame of a filmstrip
FRAMES = 6
RENDER_EVERY = 10  # steps between rendered frames (the filmstrip picks among them)


@dataclasses.dataclass(frozen=True)
class Agent:
  """The member shown for one arm on one task."""

  arm: str
  run_dir: str
  seed: int
  member: int
  step: int
  evaluation_return: float  # its mean return at that step's evaluation (MJX)


def best_agent(arm: str, run_dir: str) -> Agent | None:
  """The best member over the seeds at ``run_dir``'s newest checkpoint (its own or its
  group's), from that step's evaluation record; None without a config, a checkpoint or
  that record."""
  from piekd_mjx import policy  # pylint: disable=g-import-not-at-top
  try:
    checkpoints, _ = policy.checkpoints_and_lane(run_dir, rundir.read_config(run_dir), 0)
  except (OSError, ValueError, TypeError):
    return None
  steps = rundir.checkpoint_steps(checkpoints)
  if not steps:
    return None
  record = records_lib.evaluation(run_dir, steps[-1])
  if record is None:
    return None
  returns = np.array([[np.nan if v is None else v for v in seed]
                      for seed in record['eval/returns']], np.float64)
  if np.isnan(returns).all():
    return None
  seed, member = np.unravel_index(np.nanargmax(returns), returns.shape)
  return Agent(arm, run_dir, int(seed), int(member), steps[-1],
               float(returns[seed, member]))


def file_name(figure: str, env: str, arm: str) -> str:
  """The filmstrip's file name: the figure, task and arm, in safe characters."""
  return re.sub(r'[^A-Za-z0-9_.-]+', '_', f'{figure}-{env}-agent-{arm}') + '.png'


def draw(agent: Agent, path: str) -> None:
  """Plays ``agent`` once on MuJoCo C and writes the filmstrip to ``path``."""
  from piekd_mjx import play  # pylint: disable=g-import-not-at-top
  from piekd_mjx import policy  # pylint: disable=g-import-not-at-top
  member = policy.load(agent.run_dir, seed=agent.seed, member=agent.member, step=agent.step)
  _, frames = play.play_mujoco(member, 1, 0, render=True, size=FRAME_SIZE,
                               render_every=RENDER_EVERY)
  play.write_filmstrip(path, frames, FRAMES)


def section(figure: dict, root: str, out_dir: str, draw_them: bool) -> list[str]:
  """REPORT.md's lines of a figure's agents (none when no run keeps a checkpoint),
  drawing their filmstrips into ``out_dir`` when ``draw_them``."""
  shown = []
  for cell in figure['cells']:
    agent = best_agent(cell['arm'], os.path.join(root, 'runs', cell['run']))
    if agent is not None:
      shown.append((cell['env'], agent))
  if not shown:
    return []
  lines = ['### The agents', '',
           f'The best member of each arm at its last checkpoint (over every seed), its '
           f'first episode on MuJoCo C (Gymnasium, episode seed 0), {FRAMES} frames '
           'evenly spaced from reset to its end:', '']
  problem = None
  if draw_them:
    from piekd_mjx import play  # pylint: disable=g-import-not-at-top
    problem = play.check_rendering()
  for env, agent in sorted(shown, key=lambda x: (x[0], figure['labels'].index(x[1].arm))):
    name = file_name(figure['name'], env, agent.arm)
    lines.append(f'- {env}, {agent.arm}: seed {agent.seed}, member {agent.member}, step '
                 f'{agent.step:,} (its evaluation return {agent.evaluation_return:,.1f})')
    if problem is None:
      lines.append(f'  ![{env} {agent.arm}]({name})')
      if draw_them:
        draw(agent, os.path.join(out_dir, name))
  if problem is not None:
    lines.append(f'- not drawn on this machine: {problem}')
  return lines + ['']
