"""When things happen in a run: the one place that turns a ``Config`` into its events.

A run is a sequence of environment steps shared by every seed. After some steps the
host does work between jitted chunks; ``events`` lists those steps in order, each with
what happens there. Within one step the order is fixed: **evaluate, then the phase,
then the checkpoint**, so an evaluation scores the members as trained, never students
just pulled onto the teacher (the reference evaluates at step t before the phase that
step t triggers), and a checkpoint holds the state after everything of its step.

The rules:

* Warm-up: steps ``[0, warmup_steps)`` act uniformly at random and do not update; the
  step ``warmup_steps`` ends it (``Event.warmup_end``), so no chunk straddles it.
* Evaluation: after every ``eval_every`` steps and after the last step.
* Phase (``has_phases``): after step t when ``t > warmup_steps`` and
  ``t % distill_interval == 0`` (the reference's rule), except after the run's last
  step, where nothing would train on its result. A finished run extended with
  ``--resume`` runs that skipped phase first (``events(..., phase_pending=True)``), so
  the extended run equals one that was always that long.
* Checkpoint: after the first evaluation at or after every multiple of
  ``checkpoint_every``, and after the last step.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from piekd_mjx.config import Config


@dataclasses.dataclass(frozen=True)
class Event:
  """What the host does after environment step ``step``, in the field order."""

  step: int
  warmup_end: bool = False  # the chunks from here on learn
  evaluate: bool = False
  phase: bool = False
  checkpoint: bool = False
  end: bool = False  # the run's last step


def has_phases(config: Config) -> bool:
  """Whether the run has knowledge-sharing phases (``Config.has_phases``: extra updates,
  or a teacher with at least one student)."""
  return config.has_phases


def phase_due(config: Config, step: int) -> bool:
  """The reference's rule: a phase follows step t when t > warm-up and t % I == 0."""
  return (has_phases(config) and step > config.warmup_steps
          and step % config.distill_interval == 0)


def phase_steps(config: Config) -> list[int]:
  """The steps after which a phase runs, the run's last step excluded."""
  interval = config.distill_interval
  return [t for t in range(interval, config.total_steps, interval) if phase_due(config, t)]


def eval_steps(config: Config) -> list[int]:
  """The steps after which the run evaluates: every ``eval_every`` and at the end."""
  steps = list(range(config.eval_every, config.total_steps + 1, config.eval_every))
  if steps[-1:] != [config.total_steps]:
    steps.append(config.total_steps)
  return steps


def checkpoint_steps(config: Config) -> list[int]:
  """The evaluation steps after which the run checkpoints: the first evaluation at or
  after every multiple of ``checkpoint_every``, and the last one."""
  evals = eval_steps(config)
  every = config.checkpoint_every
  steps = [t for previous, t in zip([0] + evals, evals) if t // every > previous // every]
  if steps[-1:] != evals[-1:]:
    steps.append(evals[-1])
  return steps


def events(config: Config, start: int = 0, phase_pending: bool = False) -> list[Event]:
  """The events after ``start`` (the step a run starts or resumes at), in step order.

  Args:
    config: the run's configuration.
    start: the environment step the run is at; only later events are listed, except
      a pending phase at ``start`` itself.
    phase_pending: the run stopped at ``start`` with its phase there not run (it was
      the last step then); if a phase is due at ``start`` and the run now goes on, the
      first event is that phase.

  Returns:
    One ``Event`` per step that has anything, the last one with ``end``.
  """
  return [event for event, _ in group_events([config], start,
                                             (0,) if phase_pending else ())]


def group_events(configs: Sequence[Config], start: int = 0,
                 phase_pending: Sequence[int] = ()) -> list[tuple[Event, tuple[int, ...]]]:
  """The events of runs trained together as lanes, with the runs that have a phase.

  The runs share every rule but the phases' (their warm-up, evaluations, checkpoints
  and length are those of ``configs[0]``); each run keeps its own phase steps, and an
  event has a phase when any run has one. ``phase_pending`` lists the runs whose phase
  at ``start`` did not run (see ``events``).

  Returns:
    (event, runs with a phase there, in order) per step that has anything.
  """
  config = configs[0]
  evals, saves = set(eval_steps(config)), set(checkpoint_steps(config))
  phases = [set(phase_steps(c)) for c in configs]
  steps = evals | saves | set().union(*phases) | {config.warmup_steps, config.total_steps}
  listed = []
  pending = tuple(r for r in phase_pending if start in phases[r])
  if pending:
    listed.append((Event(step=start, phase=True), pending))
  for t in sorted(s for s in steps if s > start):
    runs = tuple(r for r, p in enumerate(phases) if t in p)
    listed.append((Event(step=t, warmup_end=t == config.warmup_steps, evaluate=t in evals,
                         phase=bool(runs), checkpoint=t in saves,
                         end=t == config.total_steps), runs))
  return listed


def chunks(start: int, stop: int, warmup_steps: int, log_every: int
           ) -> list[tuple[int, bool]]:
  """The chunks from step ``start`` to the next event's ``stop``, as (num_steps, learn):
  at most ``log_every`` steps each, learning from ``warmup_steps`` on (the end of
  warm-up is an event, so no chunk straddles it)."""
  listed, step = [], start
  while step < stop:
    n = min(stop - step, log_every)
    listed.append((n, step >= warmup_steps))
    step += n
  return listed
