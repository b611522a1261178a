"""Workload profiles: every kind against hand-computed rates, vectorised like scalar, noise seeded."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from usm.simulator.workload import (
    Constant,
    Diurnal,
    FlashCrowd,
    Ramp,
    Stage,
    noise_factors,
    rate,
    rates_at,
)

# The original's k6 test (sockShopUser.js): 1 (1m) -> 100 (1m30s) -> 100 (2m) -> 1 (1m30s) -> 1 (1m).
K6 = Ramp((Stage(60, 1), Stage(90, 100), Stage(120, 100), Stage(90, 1), Stage(60, 1)), start=1)
K6_REPEATED = Ramp(K6.stages, start=1, repeat=True)
FROM_ZERO = Ramp((Stage(10, 10), Stage(0, 50), Stage(10, 50)))
HALF_USERS = Ramp(K6.stages, start=1, requests_per_user=0.5)
DAY = Diurnal(peak=100, trough=20, peak_at=20)
TOKYO_DAY = Diurnal(peak=100, trough=20, peak_at=20, utc_offset=9)
CROWD = FlashCrowd(base=10, peak=110, start=100, rise=50, hold=100, fall=200)

CASES = [
    # (profile, time, expected requests per second), each worked out by hand
    pytest.param(Constant(5), 0, 5, id="constant-at-0"),
    pytest.param(Constant(5), 86_400, 5, id="constant-a-day-later"),
    pytest.param(K6, 0, 1, id="k6-start"),
    pytest.param(K6, 30, 1, id="k6-first-stage-flat"),
    pytest.param(K6, 105, 50.5, id="k6-halfway-up: 1 + 99*45/90"),
    pytest.param(K6, 150, 100, id="k6-top"),
    pytest.param(K6, 200, 100, id="k6-holding"),
    pytest.param(K6, 315, 50.5, id="k6-halfway-down"),
    pytest.param(K6, 420, 1, id="k6-end"),
    pytest.param(K6, 1_000, 1, id="k6-after-end-stays-at-last-target"),
    pytest.param(K6_REPEATED, 420 + 105, 50.5, id="k6-repeated-second-round"),
    pytest.param(K6_REPEATED, 3 * 420 + 150, 100, id="k6-repeated-fourth-round-top"),
    pytest.param(HALF_USERS, 150, 50, id="k6-half-a-request-per-user"),
    pytest.param(FROM_ZERO, 5, 5, id="ramp-from-zero-by-default"),
    pytest.param(FROM_ZERO, 15, 50, id="ramp-zero-length-stage-jumps"),
    pytest.param(DAY, 20 * 3600, 100, id="diurnal-peak-at-20h"),
    pytest.param(DAY, 8 * 3600, 20, id="diurnal-trough-12h-later"),
    pytest.param(DAY, 14 * 3600, 60, id="diurnal-midway: cos(-pi/2)=0"),
    pytest.param(DAY, 44 * 3600, 100, id="diurnal-next-day"),
    pytest.param(TOKYO_DAY, 11 * 3600, 100, id="diurnal-utc+9-peaks-at-11h-utc"),
    pytest.param(CROWD, 0, 10, id="crowd-before"),
    pytest.param(CROWD, 100, 10, id="crowd-starts"),
    pytest.param(CROWD, 125, 60, id="crowd-halfway-up"),
    pytest.param(CROWD, 150, 110, id="crowd-peak"),
    pytest.param(CROWD, 250, 110, id="crowd-end-of-hold"),
    pytest.param(CROWD, 350, 60, id="crowd-halfway-down"),
    pytest.param(CROWD, 450, 10, id="crowd-over"),
    pytest.param(CROWD, 10_000, 10, id="crowd-long-after"),
]


@pytest.mark.parametrize(("profile", "at", "expected"), CASES)
def test_rate_by_hand(profile, at, expected):
    assert rate(profile, at) == pytest.approx(expected, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("profile", [Constant(3), K6, K6_REPEATED, DAY, TOKYO_DAY, CROWD],
                         ids=["constant", "ramp", "ramp-repeated", "diurnal", "diurnal-tokyo", "flash-crowd"])
def test_vectorised_equals_scalar(profile):
    times = np.linspace(0, 2 * 86_400, 1_001)
    values = rate(profile, times)
    assert isinstance(values, np.ndarray) and values.shape == times.shape
    assert np.allclose(values, [rate(profile, float(t)) for t in times])


def test_a_scalar_time_gives_a_float():
    assert isinstance(rate(K6, 10.0), float)


@given(
    peak=st.floats(0, 1e4),
    trough=st.floats(0, 1e4),
    peak_at=st.floats(0, 24),
    offset=st.floats(-12, 12),
    at=st.floats(0, 1e7),
)
def test_diurnal_stays_between_trough_and_peak(peak, trough, peak_at, offset, at):
    value = rate(Diurnal(peak, trough, peak_at, offset), at)
    assert min(peak, trough) - 1e-6 <= value <= max(peak, trough) + 1e-6


@given(
    base=st.floats(0, 1e4),
    peak=st.floats(0, 1e4),
    durations=st.tuples(*[st.floats(0, 1e4)] * 4),
    at=st.floats(-1e4, 1e5),
)
def test_flash_crowd_stays_between_base_and_peak(base, peak, durations, at):
    start, rise, hold, fall = durations
    value = rate(FlashCrowd(base, peak, start, rise, hold, fall), at)
    assert min(base, peak) - 1e-6 <= value <= max(base, peak) + 1e-6


@given(targets=st.lists(st.floats(0, 1e3), min_size=1, max_size=6), at=st.floats(0, 1e4))
def test_ramp_stays_within_its_targets(targets, at):
    profile = Ramp(tuple(Stage(60, t) for t in targets), start=0, repeat=True)
    assert -1e-9 <= rate(profile, at) <= max(targets) + 1e-6


def test_sources_send_nothing_before_their_offset():
    rates = rates_at((Constant(4), Constant(6)), np.array([0.0, 100.0]), 50.0)
    assert rates.tolist() == [4.0, 0.0]
    assert rates_at((Constant(4), Constant(6)), np.array([0.0, 100.0]), 100.0).tolist() == [4.0, 6.0]


class TestNoise:
    def test_same_seed_same_factors(self):
        assert np.array_equal(noise_factors(7, [0.1, 0.2], 50), noise_factors(7, [0.1, 0.2], 50))

    def test_another_seed_other_factors(self):
        assert not np.array_equal(noise_factors(7, [0.1], 50), noise_factors(8, [0.1], 50))

    def test_no_amplitude_no_noise(self):
        assert np.array_equal(noise_factors(7, [0.0, 0.0], 20), np.ones((2, 20)))

    def test_a_new_source_leaves_the_others_alone(self):
        assert np.array_equal(noise_factors(3, [0.1, 0.3], 40)[0], noise_factors(3, [0.1], 40)[0])

    def test_never_negative_and_about_one(self):
        factors = noise_factors(1, [0.5], 20_000)[0]
        assert factors.min() >= 0.0
        assert factors.mean() == pytest.approx(1.0, abs=0.02)
