"""The simulated world's roster: its sorted lists and aligned columns are always those a full sort would give."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest

from usm.simulator.roster import Roster


@dataclass
class Item:
    name: str
    service: int
    host: int
    running: bool = False


def check(roster: Roster[Item], items: dict[str, Item], services: int) -> None:
    """The roster against the same containers sorted from scratch."""
    every = sorted(items.values(), key=lambda i: i.name)
    running = [i for i in every if i.running]
    assert roster.containers == every
    assert roster.running == running
    assert roster.running_names() == [i.name for i in running]
    assert roster.service.tolist() == [i.service for i in every]
    assert roster.is_running.tolist() == [i.running for i in every]
    assert roster.running_service.tolist() == [i.service for i in running]
    assert roster.running_host.tolist() == [i.host for i in running]
    assert roster.replicas == [sum(i.service == s for i in every) for s in range(services)]
    positions = roster.running_positions().tolist()
    assert [roster.running[p].name if p >= 0 else None for p in positions] == \
        [i.name if i.running else None for i in every]
    assert len(roster.told) == roster.told_cpu.size == len(every)


def test_random_comings_and_goings_keep_every_list_sorted_and_aligned():
    rng = random.Random(7)
    roster: Roster[Item] = Roster(3)
    items: dict[str, Item] = {}
    for step in range(400):
        choice = rng.random()
        if choice < 0.45 or not items:
            item = Item(f"c{rng.randrange(10_000):05d}", rng.randrange(3), rng.randrange(5))
            if item.name in items:
                continue
            items[item.name] = item
            roster.add(item, item.service)
        elif choice < 0.75:
            starting = [i for i in items.values() if not i.running]
            if starting:
                item = rng.choice(starting)
                item.running = True
                roster.run(item, item.service, item.host)
        else:
            item = items.pop(rng.choice(sorted(items)))
            roster.remove(item, item.service)
        if step % 20 == 0:
            check(roster, items, 3)
    check(roster, items, 3)


def test_a_service_version_changes_when_its_running_containers_do_and_only_then():
    roster: Roster[Item] = Roster(2)
    a, b = Item("a-1", 0, 0), Item("b-1", 1, 0)
    roster.add(a, 0)
    roster.add(b, 1)
    assert roster.versions == [0, 0]  # starting containers route nothing
    roster.run(a, 0, 0)
    assert roster.versions == [1, 0]
    roster.remove(b, 1)  # b never ran
    assert roster.versions == [1, 0]
    roster.remove(a, 0)
    assert roster.versions == [2, 0]


def test_what_placement_was_told_is_forgotten_when_a_container_starts_running():
    roster: Roster[Item] = Roster(1)
    a, b = Item("a-1", 0, 0), Item("a-2", 0, 0)
    roster.add(a, 0)
    roster.add(b, 0)
    roster.told[:] = ["told a", "told b"]
    roster.told_cpu[:] = [0.5, 0.25]
    roster.run(b, 0, 0)  # it was told about as starting: that is no longer true
    assert roster.told == ["told a", None]
    assert roster.told_cpu[0] == 0.5 and np.isnan(roster.told_cpu[1])


def test_unknown_and_duplicate_names_are_refused():
    roster: Roster[Item] = Roster(1)
    a = Item("a-1", 0, 0)
    roster.add(a, 0)
    with pytest.raises(ValueError, match="a-1 is already on the roster"):
        roster.add(Item("a-1", 0, 1), 0)
    with pytest.raises(KeyError, match="a-2 is not on the roster"):
        roster.remove(Item("a-2", 0, 0), 0)
