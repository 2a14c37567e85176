"""SIGINT and SIGTERM as stop requests (piekd_mjx/signals.py): caught into a list, a
second one raising KeyboardInterrupt, nested contexts sharing what they caught, the
handlers restored."""

import signal

import pytest

from piekd_mjx import signals


def test_a_signal_is_a_request_and_a_second_one_insists():
  before = signal.getsignal(signal.SIGTERM)
  with signals.caught() as caught:
    signal.raise_signal(signal.SIGTERM)
    assert caught == [signal.SIGTERM]
    with pytest.raises(KeyboardInterrupt):
      signal.raise_signal(signal.SIGINT)
  assert signal.getsignal(signal.SIGTERM) is before
  with signals.caught(second_interrupts=False) as caught:
    signal.raise_signal(signal.SIGINT)
    signal.raise_signal(signal.SIGTERM)
    assert caught == [signal.SIGINT, signal.SIGTERM]


def test_nested_contexts_share_what_they_caught():
  # A sweep's context around a run's: a signal between the two (while the run restores
  # its checkpoint) is the run's first; one inside reaches the sweep's list too.
  with signals.caught() as sweep:
    signal.raise_signal(signal.SIGTERM)
    with signals.caught() as run:
      assert run == [signal.SIGTERM]
      with pytest.raises(KeyboardInterrupt):  # the second signal the run has seen
        signal.raise_signal(signal.SIGINT)
    assert sweep == [signal.SIGTERM]
  with signals.caught(second_interrupts=False) as sweep:
    with signals.caught() as run:
      signal.raise_signal(signal.SIGINT)
      assert run == [signal.SIGINT]
    assert sweep == [signal.SIGINT]
    with signals.caught() as later:
      assert later == [signal.SIGINT]
  with signals.caught() as fresh:
    assert fresh == []
