"""The policy engine: pure functions and data from policy files to decisions.

The public surface (see docs/engine.md)::

    policy = load_policy("policies/")          # or raises InvalidSource (FILE:LINE:COLUMN problems)
    engine = Engine(policy)
    batch = engine.simulate(at, inventory, samples)     # simulated metrics applied
    cycle = engine.cycle(at, inventory, terms)          # terms: the history's answer for policy.terms
    cycle.actions, cycle.suppressed, cycle.evaluations, cycle.explain("c1")
    engine.replace(load_policy("policies/"))            # atomically, between cycles
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Where each public name lives. They are imported on first use (PEP 562), so that a command which only
# reads a file format (``usm.engine.yamldoc``) does not pay for polars and CLIPS at start-up.
_HOMES = {
    "Cycle": "engine", "Engine": "engine", "ExpressionError": "expressions",
    "App": "inventory", "Container": "inventory", "Host": "inventory", "Inventory": "inventory", "Service": "inventory",
    "load_policy": "loader",
    "Decision": "policy", "Policy": "policy", "Rule": "policy", "Scope": "policy", "Settings": "policy",
    "SimulatedMetric": "policy",
    "Action": "results", "EngineState": "results", "Explanation": "results", "RuleVerdict": "results",
    "Suppression": "results",
    "Func": "terms", "Term": "terms",
    "InvalidSource": "yamldoc", "Problem": "yamldoc",
}

if TYPE_CHECKING:
    from usm.engine.engine import Cycle, Engine
    from usm.engine.expressions import ExpressionError
    from usm.engine.inventory import App, Container, Host, Inventory, Service
    from usm.engine.loader import load_policy
    from usm.engine.policy import Decision, Policy, Rule, Scope, Settings, SimulatedMetric
    from usm.engine.results import Action, EngineState, Explanation, RuleVerdict, Suppression
    from usm.engine.terms import Func, Term
    from usm.engine.yamldoc import InvalidSource, Problem


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'usm.engine' has no attribute {name!r}")
    value = getattr(import_module(f"usm.engine.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Action", "App", "Container", "Cycle", "Decision", "Engine", "EngineState", "Explanation", "ExpressionError",
    "Func", "Host", "InvalidSource", "Inventory", "Policy", "Problem", "Rule", "RuleVerdict", "Scope", "Service",
    "Settings", "SimulatedMetric", "Suppression", "Term", "load_policy",
]
