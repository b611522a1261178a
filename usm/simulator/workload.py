"""Request-rate profiles of workload sources: how many requests per second a group of users sends at a time.

Every profile is frozen data and ``rate(profile, t)`` is a pure function of the time ``t`` in seconds since the
start of the scenario; ``t`` may be a number or a numpy array (the result is then an array of the same shape).
Rates are *expected* requests per second, never negative and never random: randomness, when a scenario asks for
it, comes from ``noise_factors``, drawn once from a seeded ``numpy.random.Generator``.

Profiles:

* ``Constant(rate)``: the same rate all the time;
* ``Ramp(stages, start, requests_per_user, repeat)``: k6 ``stages``: each stage moves linearly from the previous
  target (``start`` for the first) to its own over its duration; after the last stage the rate stays at the last
  target, or with ``repeat`` the whole ramp starts over. Targets count users (k6 VUs); ``requests_per_user``
  turns them into requests per second;
* ``Diurnal(peak, trough, peak_at, utc_offset)``: a day-long cosine between ``trough`` and ``peak``, highest at
  ``peak_at`` o'clock *local time*, local time being UTC + ``utc_offset`` hours. Scenario time 0 is midnight UTC.
  The scenario loader sets ``utc_offset`` to the source's solar time (longitude / 15) unless the scenario gives
  one, so a source in Tokyo peaks nine hours before one in London;
* ``FlashCrowd(base, peak, start, rise, hold, fall)``: ``base`` until ``start``, then linearly up to ``peak`` over
  ``rise`` seconds, ``peak`` for ``hold`` seconds, linearly back down to ``base`` over ``fall`` seconds, ``base``
  after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

SECONDS_PER_DAY = 86_400.0

Times = float | NDArray[np.float64]


@dataclass(frozen=True)
class Stage:
    """One k6 stage: reach ``target`` users linearly over ``duration`` seconds."""

    duration: float
    target: float


@dataclass(frozen=True)
class Constant:
    rate: float


@dataclass(frozen=True)
class Ramp:
    stages: tuple[Stage, ...]
    start: float = 0.0
    requests_per_user: float = 1.0
    repeat: bool = False

    @property
    def length(self) -> float:
        """The time the stages take, in seconds."""
        return sum(s.duration for s in self.stages)


@dataclass(frozen=True)
class Diurnal:
    peak: float
    trough: float
    peak_at: float  # hour of the day, local time, in [0, 24)
    utc_offset: float = 0.0  # hours


@dataclass(frozen=True)
class FlashCrowd:
    base: float
    peak: float
    start: float
    rise: float
    hold: float
    fall: float


Profile = Constant | Ramp | Diurnal | FlashCrowd


def rate(profile: Profile, t: ArrayLike) -> Times:
    """Requests per second of ``profile`` at time(s) ``t`` (seconds from the scenario's start)."""
    times = np.asarray(t, dtype=np.float64)
    if isinstance(profile, Constant):
        values = np.full(times.shape, float(profile.rate))
    elif isinstance(profile, Ramp):
        values = ramp_rate(profile, times)
    elif isinstance(profile, Diurnal):
        values = diurnal_rate(profile, times)
    elif isinstance(profile, FlashCrowd):
        values = flash_crowd_rate(profile, times)
    else:
        raise TypeError(f"not a workload profile: {profile!r}")
    values = np.maximum(values, 0.0)
    return float(values) if values.ndim == 0 else values


def ramp_rate(profile: Ramp, times: NDArray[np.float64]) -> NDArray[np.float64]:
    """The k6 ramp: piecewise linear through ``(0, start)`` and each stage's ``(end, target)``."""
    ends = np.cumsum([s.duration for s in profile.stages])
    breakpoints = np.concatenate(([0.0], ends))
    users = np.array([profile.start] + [s.target for s in profile.stages], dtype=np.float64)
    length = float(breakpoints[-1])
    clock = np.maximum(times, 0.0)
    if profile.repeat and length > 0:
        clock = np.mod(clock, length)
    # np.interp needs increasing breakpoints; a zero-length stage jumps, so nudge ties apart by a hair.
    breakpoints = breakpoints + np.arange(breakpoints.size) * 1e-9
    return np.interp(clock, breakpoints, users) * profile.requests_per_user


def diurnal_rate(profile: Diurnal, times: NDArray[np.float64]) -> NDArray[np.float64]:
    """``trough + (peak - trough) · (1 + cos(2π (h - peak_at) / 24)) / 2``, ``h`` the local hour."""
    local_hour = np.mod(times / 3600.0 + profile.utc_offset, 24.0)
    phase = 2.0 * math.pi * (local_hour - profile.peak_at) / 24.0
    return profile.trough + (profile.peak - profile.trough) * (1.0 + np.cos(phase)) / 2.0


def flash_crowd_rate(profile: FlashCrowd, times: NDArray[np.float64]) -> NDArray[np.float64]:
    """Base, linear rise, hold at peak, linear fall, base again."""
    top = profile.start + profile.rise
    down = top + profile.hold
    end = down + profile.fall
    breakpoints = np.array([profile.start, top, down, end]) + np.arange(4) * 1e-9
    values = np.array([profile.base, profile.peak, profile.peak, profile.base], dtype=np.float64)
    return np.interp(times, breakpoints, values)


def rates_at(profiles: tuple[Profile, ...], offsets: NDArray[np.float64], t: float) -> NDArray[np.float64]:
    """The rate of every source at time ``t``: source ``i`` follows ``profiles[i]`` from ``offsets[i]`` seconds
    on and sends nothing before."""
    result = np.empty(len(profiles), dtype=np.float64)
    for i, profile in enumerate(profiles):
        local = t - offsets[i]
        result[i] = 0.0 if local < 0 else rate(profile, local)
    return result


def noise_factors(seed: int, amplitudes: ArrayLike, ticks: int) -> NDArray[np.float64]:
    """Multiplicative noise, one factor per source and tick: ``max(0, 1 + a·z)`` with ``z`` standard normal and
    ``a`` the source's amplitude (0: no noise, factor 1). Shape ``(sources, ticks)``.

    Each source draws from its own stream (``SeedSequence([seed, i])``), so adding a source does not change the
    noise of the others, and the same seed always gives the same factors.
    """
    amplitude = np.asarray(amplitudes, dtype=np.float64)
    factors = np.ones((amplitude.size, max(ticks, 1)), dtype=np.float64)
    for i, a in enumerate(amplitude):
        if a > 0:
            generator = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, i])))
            factors[i] = np.maximum(0.0, 1.0 + a * generator.standard_normal(factors.shape[1]))
    return factors


__all__ = [
    "SECONDS_PER_DAY",
    "Constant",
    "Diurnal",
    "FlashCrowd",
    "Profile",
    "Ramp",
    "Stage",
    "diurnal_rate",
    "flash_crowd_rate",
    "noise_factors",
    "ramp_rate",
    "rate",
    "rates_at",
]
