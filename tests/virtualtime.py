"""Virtual time for code that waits on threads of its own (the background syncs).

Time moves only when the test calls :meth:`VirtualTime.advance`, which then waits (in real time, for real
threads to do their work) until every thread that was due has run and gone back to sleep. So a test sees each
periodic fetch happen exactly at its due times, without sleeping and without races.
"""

from __future__ import annotations

import threading


class VirtualTime:
    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._changed = threading.Condition()
        self._sleeping: dict[int, float] = {}  # thread id -> when it wakes up
        self._closed = False

    def clock(self) -> float:
        with self._changed:
            return self._now

    def wait(self, seconds: float) -> bool:
        """A thread's wait: until ``seconds`` of virtual time have passed; true once the time is closed."""
        with self._changed:
            me = threading.get_ident()
            self._sleeping[me] = self._now + seconds
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._closed or self._now >= self._sleeping[me])
            del self._sleeping[me]
            self._changed.notify_all()
            return self._closed

    def advance(self, seconds: float, sleepers: int, timeout: float = 60.0) -> None:
        """Move the time on, then wait until ``sleepers`` threads sleep, each until a time still to come."""
        with self._changed:
            self._now += seconds
            self._changed.notify_all()
            settled = self._changed.wait_for(
                lambda: len(self._sleeping) == sleepers and all(t > self._now for t in self._sleeping.values()),
                timeout)
            if not settled:
                raise AssertionError(f"at {self._now:g} s, {len(self._sleeping)} thread(s) asleep, "
                                     f"{sleepers} expected, after {timeout:g} s of real time")

    def settle(self, sleepers: int, timeout: float = 60.0) -> None:
        """Wait until ``sleepers`` threads sleep (after starting them, say), the time unchanged."""
        self.advance(0.0, sleepers, timeout)

    def close(self) -> None:
        """Wake every thread for good: their waits return true (stop)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
