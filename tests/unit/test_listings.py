"""The memory behind the hub's listings (usm.web.listings) and token checks (usm.web.tokens): pages cut from a
kept listing are the pages of its items, a listing is built once enough requests missed it at one revision and
by one caller at a time, and both caches stay within their bounds, the least recently used going first."""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, datetime, timedelta

import pytest

from usm.web.listings import ROWS_PER_PAGE_READ, Listing, ListingCache, listing_of, page_of
from usm.web.tokens import Bearer, TokenCache

NOON = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def items(count: int) -> list[dict]:
    return [{"name": f"c-{n:03d}", "port": n, "state": "running", "note": "ünïcödé \"quoted\"" if n % 7 else None}
            for n in range(count)]


@pytest.mark.parametrize("count", [0, 1, 2, 37])
def test_a_page_cut_from_a_listing_is_the_page_of_its_items(count):
    rows = items(count)
    listing = listing_of(rows)
    assert listing.total == count
    rng = random.Random(count)
    for limit, offset in [(1, 0), (1000, 0), (5, count), (5, count + 3)] + [
            (rng.randint(1, 40), rng.randint(0, 45)) for _ in range(50)]:
        page = listing.page(limit, offset)
        assert json.loads(page) == {"items": rows[offset:offset + limit], "total": count, "limit": limit,
                                    "offset": offset}
        assert page == page_of(rows[offset:offset + limit], count, limit, offset)


def test_a_listing_is_built_after_enough_misses_at_one_revision_by_one_caller():
    cache = ListingCache(build_after=2)
    assert cache.get("k", (1,)) is None and not cache.claim("k", (1,))
    assert cache.get("k", (1,)) is None
    assert cache.claim("k", (1,)) and not cache.claim("k", (1,))  # one builder at a time
    assert not cache.claim("k", (2,))  # misses are counted per revision
    cache.give_up("k", (1,))
    assert cache.claim("k", (1,))
    built = listing_of(items(3))
    cache.keep("k", (1,), built)
    assert cache.get("k", (1,)) is built and cache.peek("k", (1,)) is built
    assert cache.peek("k", (2,)) is None and cache.get("k", (2,)) is None  # a newer revision: not served
    assert cache.peek("k", (1,)) is None and len(cache) == 0  # and the older listing is dropped


def test_a_listing_found_too_large_is_not_claimed_again_at_that_revision():
    cache = ListingCache(build_after=1)
    cache.get("k", (1,))
    assert cache.claim("k", (1,))
    cache.give_up("k", (1,), too_large=True)
    cache.get("k", (1,))
    assert not cache.claim("k", (1,))
    cache.get("k", (2,))
    assert cache.claim("k", (2,))


def test_listings_stay_within_the_budget_and_the_least_recently_used_go_first():
    one = listing_of(items(10))
    cache = ListingCache(budget=3 * one.size + 100, build_after=1)
    for key in "abc":
        cache.keep(key, (1,), one)
    assert len(cache) == 3 and cache.bytes <= cache.budget
    assert cache.get("a", (1,)) is one  # a is now the most recently used
    cache.keep("d", (1,), one)
    assert cache.peek("b", (1,)) is None and {k for k in "acd" if cache.peek(k, (1,))} == set("acd")
    assert cache.bytes <= cache.budget
    huge = listing_of(items(2000))
    cache.keep("e", (1,), huge)
    assert cache.peek("e", (1,)) is None and cache.bytes <= cache.budget
    for number in range(1000):  # requests for many listings that are never built: bounded too
        cache.get(f"miss-{number}", (1,))
    assert cache.bytes <= cache.budget


def test_after_listings_that_did_not_pay_off_the_next_is_built_only_once_misses_cost_as_much():
    cache = ListingCache(build_after=2)
    rows = 3 * ROWS_PER_PAGE_READ
    built = listing_of(items(rows))
    for _ in range(2):
        cache.get("k", (1,))
    assert cache.claim("k", (1,))  # nothing known yet: built at once
    cache.keep("k", (1,), built)
    assert cache.get("k", (1,)) is built  # one page served, then the store changed
    for miss in range(1, 4):
        cache.get("k", (2,))
        assert cache.claim("k", (2,)) == (miss == 3), miss  # three misses: as much as building 900 items
    cache.keep("k", (2,), built)
    for _ in range(3):  # enough pages served to pay for it
        assert cache.get("k", (2,)) is built
    for _ in range(2):
        cache.get("k", (3,))
    assert cache.claim("k", (3,))  # so the next one is built at once again


def test_a_caller_waits_for_the_listing_another_is_building():
    cache = ListingCache(build_after=1)
    assert cache.wait("k", (1,), timeout=10) is None  # nobody is building it: no wait
    cache.get("k", (1,))
    assert cache.claim("k", (1,))
    built, got = listing_of(items(5)), []
    waiter = threading.Thread(target=lambda: got.append(cache.wait("k", (1,), timeout=60)))
    waiter.start()
    cache.keep("k", (1,), built)
    waiter.join(60)
    assert got == [built]
    cache.get("k", (2,))
    assert cache.claim("k", (2,))
    waiter = threading.Thread(target=lambda: got.append(cache.wait("k", (2,), timeout=60)))
    waiter.start()
    cache.give_up("k", (2,))
    waiter.join(60)
    assert got == [built, None]


def test_listing_size_counts_its_bytes():
    listing = listing_of(items(100))
    assert isinstance(listing, Listing) and listing.size >= len(listing.body) + 8 * 101


def test_a_token_is_known_only_at_the_revision_it_was_read_and_until_it_expires():
    tokens = TokenCache(size=2)
    tokens.keep("usm_a", (1, 1), Bearer("ada", True, NOON + timedelta(hours=1)))
    assert tokens.get("usm_a", (1, 1), NOON) == Bearer("ada", True, NOON + timedelta(hours=1))
    assert tokens.get("usm_a", (1, 2), NOON) is None  # tokens or users changed since
    assert tokens.get("usm_a", (1, 1), NOON + timedelta(hours=1)) is None  # expired
    tokens.keep("usm_b", (1, 1), Bearer("bob", False, None))
    tokens.get("usm_a", (1, 1), NOON)
    tokens.keep("usm_c", (1, 1), Bearer("cy", False, None))
    assert len(tokens) == 2 and tokens.get("usm_b", (1, 1), NOON) is None
    assert tokens.get("usm_a", (1, 1), NOON) is not None and tokens.get("usm_c", (1, 1), NOON) is not None


def test_bounds_must_be_positive():
    with pytest.raises(ValueError):
        ListingCache(budget=0)
    with pytest.raises(ValueError):
        TokenCache(size=0)
