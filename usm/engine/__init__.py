"""The policy engine: pure functions and data from policy files to decisions.

The public surface (see docs/engine.md)::

    policy = load_policy("policies/")          # or raises InvalidSource (FILE:LINE:COLUMN problems)
    engine = Engine(policy)
    batch = engine.simulate(at, inventory, samples)     # simulated metrics applied
    cycle = engine.cycle(at, inventory, terms)          # terms: the history's answer for policy.terms
    cycle.actions, cycle.suppressed, cycle.evaluations, cycle.explain("c1")
    engine.replace(load_policy("policies/"))            # atomically, between cycles
"""

from usm.engine.engine import Cycle, Engine
from usm.engine.expressions import ExpressionError
from usm.engine.inventory import App, Container, Host, Inventory, Service
from usm.engine.loader import load_policy
from usm.engine.policy import Decision, Policy, Rule, Scope, Settings, SimulatedMetric
from usm.engine.results import Action, EngineState, Explanation, RuleVerdict, Suppression
from usm.engine.terms import Func, Term
from usm.engine.yamldoc import InvalidSource, Problem

__all__ = [
    "Action", "App", "Container", "Cycle", "Decision", "Engine", "EngineState", "Explanation", "ExpressionError",
    "Func", "Host", "InvalidSource", "Inventory", "Policy", "Problem", "Rule", "RuleVerdict", "Scope", "Service",
    "Settings", "SimulatedMetric", "Suppression", "Term", "load_policy",
]
