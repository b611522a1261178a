"""The journal's file: steps round-trip through it, a crash's cut line is tolerated, damage is reported."""

from __future__ import annotations

import pytest

from usm.actuators.journal import BEGUN, DONE, Entry, Journal, JournaledActuator, RetryPolicy, decode, encode, step_id
from usm.geo.sphere import Coordinates
from usm.manager.ports import Outcome
from usm.placement.plans import (
    DrainHost,
    LaunchCloudHost,
    MoveContainer,
    PlaceReplica,
    StartHost,
    StopContainer,
    StopHost,
    UseHost,
)

STEPS = [
    PlaceReplica("web", Coordinates(38.7, -9.1), UseHost("lisbon", 1200.0)),
    PlaceReplica("web", Coordinates(-33.9, 151.2), LaunchCloudHost("ap-southeast-2", 5.0)),
    MoveContainer("web-1", "web", "lisbon", Coordinates(52.5, 13.4), StartHost("berlin", 3.0)),
    StopContainer("web-2", "paris"),
    DrainHost("paris", (MoveContainer("web-3", "web", "paris", Coordinates(48.9, 2.3), UseHost("lisbon", 9.0)),),
              StopHost("paris")),
]


@pytest.mark.parametrize("step", STEPS, ids=lambda s: type(s).__name__)
def test_steps_round_trip(step):
    assert decode(encode(step)) == step
    assert step_id(decode(encode(step)), 15.0) == step_id(step, 15.0)


def test_an_unknown_step_type_is_refused():
    with pytest.raises(ValueError, match="unknown step type 'Teleport'"):
        decode({"type": "Teleport"})


def test_a_last_line_cut_by_a_crash_leaves_the_step_begun(tmp_path):
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, clock=lambda: 0.0)
    step = STEPS[0]
    journal.append(Entry(step_id(step, 0.0), BEGUN, 0.0, encode(step)))
    journal.close()
    with path.open("a") as out:
        out.write('{"id": "' + step_id(step, 0.0) + '", "state": "do')  # the crash cut this line
    again = Journal(path)
    assert [e.state for e in again.unfinished()] == [BEGUN]


def test_a_damaged_line_in_the_middle_is_reported_with_its_number(tmp_path):
    path = tmp_path / "journal.jsonl"
    path.write_text('not json\n{"id":"x","state":"done","at":0,"step":{}}\n')
    with pytest.raises(ValueError, match=r"journal.jsonl:1: not a journal entry"):
        Journal(path)


class Flaky:
    """An actuator that fails transiently ``times`` times, then succeeds."""

    def __init__(self, times: int, transient: bool = True) -> None:
        self.times, self.transient, self.calls = times, transient, 0

    def execute(self, step, at):
        self.calls += 1
        if self.calls <= self.times:
            return Outcome(step, False, f"attempt {self.calls} failed", self.transient)
        return Outcome(step, True, "done")


def test_backoff_grows_and_is_capped():
    policy = RetryPolicy(attempts=6, first_delay=1.0, factor=3.0, max_delay=10.0)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 3.0, 9.0, 10.0, 10.0]


def test_a_permanent_failure_is_not_retried(tmp_path):
    waits: list[float] = []
    inner = Flaky(times=5, transient=False)
    act = JournaledActuator(inner, Journal(tmp_path / "j.jsonl"), RetryPolicy(), waits.append)
    outcome = act.execute(STEPS[3], 0.0)
    assert not outcome.ok and inner.calls == 1 and waits == []


def test_a_done_step_is_never_carried_out_twice_even_after_a_restart(tmp_path):
    path = tmp_path / "j.jsonl"
    inner = Flaky(times=1)
    waits: list[float] = []
    assert JournaledActuator(inner, Journal(path), RetryPolicy(first_delay=2.0), waits.append).execute(STEPS[0], 30.0).ok
    assert inner.calls == 2 and waits == [2.0]
    again = JournaledActuator(inner, Journal(path), RetryPolicy(), waits.append)
    assert again.recover() == []
    outcome = again.execute(STEPS[0], 30.0)
    assert outcome.ok and inner.calls == 2 and outcome.detail == f"already {DONE}: done"
