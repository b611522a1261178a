"""The engine's CLIPS working memory, kept in step with each cycle's inputs.

Rete is incremental: a fact asserted or retracted costs work proportional to what it touches,
not to the size of working memory. So the working memory is not rebuilt each cycle: this
module remembers what it asserted (``judged`` facts per entity, ``candidate`` facts, service
``bounds``, ``cooling`` cooldowns, the ``clock``) and, each cycle, retracts and asserts only
what changed. Derived facts follow by logical support (see ``decide.clp``), and CLIPS reports
each derivation through a callback, so reading results never scans the fact list.

The working memory is a cache: everything in it can be derived again from the cycle's inputs
and ``EngineState``. It holds no decision state of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import clips

from usm.engine.compiler import CompiledPolicy

HOST, CONTAINER = clips.Symbol("host"), clips.Symbol("container")


@dataclass
class Selection:
    """What phase 2 concluded in one run: entities chosen to act, and entities suppressed."""

    actions: list[str] = field(default_factory=list)
    suppressed: dict[str, str] = field(default_factory=dict)


class WorkingMemory:
    def __init__(self, compiled: CompiledPolicy) -> None:
        self.env = compiled.environment({
            "usm-match": self._on_match, "usm-winner": self._on_winner,
            "usm-suppressed": self._on_suppressed, "usm-action": self._on_action,
        })
        self._judged: dict[str, Any] = {}  # entity -> its judged fact
        self._candidates: dict[str, tuple[Any, Any]] = {}
        self._bounds: dict[str, tuple[Any, Any]] = {}
        self._cooling: dict[tuple[str, str, str], tuple[float, Any]] = {}
        self._clock: Any = None
        self._in_force: frozenset[tuple[str, str, str]] = frozenset()  # the cooldowns in force at the last run
        self.matches: dict[str, dict[int, int]] = {}  # entity -> {rule index: level}
        self.winners: dict[str, tuple[int, int]] = {}  # entity -> (rule index, level)
        self._selection = Selection()
        self._templates = {name: self.env.find_template(name)
                           for name in ("judged", "candidate", "bounds", "cooling", "clock")}

    # --- callbacks from CLIPS -------------------------------------------------------------------

    def _on_match(self, entity: str, rule: int, level: int) -> None:
        self.matches.setdefault(entity, {})[rule] = level

    def _on_winner(self, entity: str, rule: int, level: int) -> None:
        self.winners[entity] = (rule, level)

    def _on_suppressed(self, entity: str, reason: str) -> None:
        self._selection.suppressed[entity] = reason

    def _on_action(self, entity: str) -> None:
        self._selection.actions.append(entity)

    # --- phase 1 -------------------------------------------------------------------------------

    def judge(self, changed: Iterable[tuple[str, str, str | None, list[str], list[int]]],
              removed: Iterable[str]) -> None:
        """Bring the ``judged`` facts up to date and run: ``changed`` rows are (entity, kind,
        service, apps, matched rule indices; empty when no condition holds any more)."""
        for entity in removed:
            self._forget(entity)
        template = self._templates["judged"]
        for entity, kind, service, apps, matched in changed:
            self._forget(entity)
            if matched:
                fact = template.assert_fact(entity=entity, kind=HOST if kind == "host" else CONTAINER,
                                            service=service or "", apps=apps, matched=matched)
                self._judged[entity] = fact
        self.env.run()

    def _forget(self, entity: str) -> None:
        fact = self._judged.pop(entity, None)
        if fact is not None:
            fact.retract()
        self.matches.pop(entity, None)
        self.winners.pop(entity, None)

    # --- phase 2 -------------------------------------------------------------------------------

    def select(self, at: float, candidates: dict[str, tuple[Any, ...]], bounds: dict[str, tuple[int, int, int]],
               cooling: dict[tuple[str, str, str], float]) -> Selection:
        """Bring candidates, bounds, cooldowns and the clock up to date, run, and return the
        conclusions. ``candidates``: entity -> (kind, target, decision, rank, priority);
        ``bounds``: service -> (replicas, min, max); ``cooling``: (kind, target, decision) -> until.

        Phase 2's conclusions depend on the clock only through which cooldowns are in force, so
        when no fact changed and the same cooldowns are in force, the last run's conclusions stand
        and CLIPS is not run (most cycles of a steady fleet)."""
        changed = self._sync(self._candidates, candidates, "candidate",
                             lambda e, c: {"entity": e, "kind": HOST if c[0] == "host" else CONTAINER,
                                           "target": c[1], "decision": clips.Symbol(c[2]), "rank": c[3],
                                           "priority": c[4]})
        changed |= self._sync(self._bounds, bounds, "bounds",
                              lambda s, b: {"service": s, "replicas": b[0], "min": b[1], "max": b[2]})
        changed |= self._sync(self._cooling, cooling, "cooling",
                              lambda k, until: {"kind": clips.Symbol(k[0]), "target": k[1],
                                                "decision": clips.Symbol(k[2]), "until": float(until)})
        in_force = frozenset(key for key, until in cooling.items() if at < until)
        if not changed and self._clock is not None and in_force == self._in_force:
            return self._selection
        self._in_force = in_force
        self._selection = Selection()
        if self._clock is not None:
            self._clock.retract()
        self._clock = self._templates["clock"].assert_fact(now=float(at))
        self.env.run()
        return self._selection

    def _sync(self, known: dict[Any, tuple[Any, Any]], wanted: dict[Any, Any], template: str, slots: Any) -> bool:
        """Retract and assert what differs between the ``known`` facts and the ``wanted`` ones; whether any did."""
        gone = [k for k in known if k not in wanted]
        for key in gone:
            known.pop(key)[1].retract()
        assert_fact = self._templates[template].assert_fact
        changed = bool(gone)
        for key, content in wanted.items():
            current = known.get(key)
            if current is not None and current[0] == content:
                continue
            if current is not None:
                current[1].retract()
            known[key] = (content, assert_fact(**slots(key, content)))
            changed = True
        return changed
