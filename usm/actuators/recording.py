"""The dry-run actuator: records every plan step and touches nothing.

``usm run --dry-run`` uses it in place of the real actuators, so the decision log shows exactly
what a live run would have done, with the outcome ``dry run: not carried out``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from usm.manager.ports import Outcome

DRY_RUN = "dry run: not carried out"


@dataclass
class RecordingActuator:
    steps: list[tuple[float, Any]] = field(default_factory=list)

    def execute(self, step: Any, at: float) -> Outcome:
        self.steps.append((at, step))
        return Outcome(step, True, DRY_RUN)


@dataclass
class StepRouter:
    """One actuator port over several: each step goes to the actuator registered for its type."""

    routes: dict[type, Any]

    def execute(self, step: Any, at: float) -> Outcome:
        actuator = self.routes.get(type(step))
        if actuator is None:
            return Outcome(step, False, f"no actuator carries out a {type(step).__name__} in this configuration")
        return actuator.execute(step, at)
