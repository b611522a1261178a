"""The request-location monitor (`usm location-monitor`) as a real server process on a free loopback port
(usm's lab launcher, `usm.lab.monitor`)."""

from __future__ import annotations

from usm.lab.monitor import LocationMonitor, usm_command

__all__ = ["LocationMonitor", "usm_command"]
