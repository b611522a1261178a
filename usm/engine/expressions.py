"""The expression language of rule conditions (policy-spec §2 and §7.5).

``parse`` turns the text of a ``when`` into a small tree; ``evaluate`` judges the tree on one
entity's term values with three-valued logic (``None`` is *unknown*); ``holds`` judges every
entity at once on numpy columns (NaN is *unknown*), with the same Kleene logic as the spec:
``unknown and false`` is false, ``unknown or true`` is true and ``not unknown`` is unknown.

Grammar, loosest first::

    or      := and ("or" and)*
    and     := unary ("and" unary)*
    unary   := "not" unary | atom
    atom    := "(" or ")" | "true" | "false" | operand OP operand
    operand := NUMBER | FIELD | FUNC "(" FIELD ["," DURATION] ")"
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from usm.engine.terms import Func, Term

BUILTIN_FIELDS: tuple[str, ...] = (
    "cpu",
    "ram",
    "cpu_percent",
    "ram_percent",
    "rx_bytes",
    "tx_bytes",
    "rx_bytes_per_sec",
    "tx_bytes_per_sec",
    "latency",
    "bandwidth_percent",
    "filesystem_available",
    "requests_per_sec",
)

NUMBER_SUFFIXES: dict[str, float] = {
    "": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
}
DURATION_UNITS: dict[str, float] = {"s": 1.0, "m": 60.0, "h": 3600.0}

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
KEYWORDS = frozenset({"and", "or", "not", "true", "false"})
WINDOWED = {Func.AVG, Func.MIN, Func.MAX, Func.DEVIATION_AVG}
FUNCTIONS = {f.value: f for f in Func if f is not Func.VALUE}


class ExpressionError(ValueError):
    """A ``when`` that does not parse. ``column`` is the 0-based offset in the text."""

    def __init__(self, message: str, column: int, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.column = column
        self.hint = hint


# --- the tree ------------------------------------------------------------------------------

Operand = Term | float


@dataclass(frozen=True)
class Literal:
    value: bool


@dataclass(frozen=True)
class Compare:
    op: str
    left: Operand
    right: Operand


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node = Literal | Compare | Not | And | Or


# --- numbers and durations -------------------------------------------------------------------

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def parse_number(text: str) -> float:
    """``"500k"`` -> 500000.0. Raises ValueError on anything else than NUMBER[SUFFIX]."""
    match = _NUMBER.fullmatch(text) or _NUMBER.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a number")
    suffix = text[match.end():]
    if suffix not in NUMBER_SUFFIXES:
        raise ValueError(f"'{text}' has an unknown suffix '{suffix}' (use k, M, G, Ki, Mi or Gi)")
    return float(match.group()) * NUMBER_SUFFIXES[suffix]


def parse_duration(text: str) -> float:
    """``"5m"`` -> 300.0 seconds. A duration is a non-negative number and one of s, m, h."""
    match = _NUMBER.match(text)
    unit = text[match.end():] if match else ""
    if not match or unit not in DURATION_UNITS or text.startswith("-"):
        raise ValueError(f"'{text}' is not a duration (write a number and one unit: 90s, 5m, 1h)")
    return float(match.group()) * DURATION_UNITS[unit]


# --- tokens ----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>-?\d+(?:\.\d+)?[A-Za-z]*)
  | (?P<op>>=|<=|==|!=|>|<)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[(),])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # number, op, word, punct, end
    text: str
    column: int


def _tokens(text: str) -> Iterator[_Token]:
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise ExpressionError(f"unexpected character '{text[position]}'", position)
        if match.lastgroup != "space":
            yield _Token(match.lastgroup or "", match.group(), position)
        position = match.end()
    yield _Token("end", "", len(text))


# --- the parser ------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, fields: Collection[str], min_window: float) -> None:
        self.tokens = list(_tokens(text))
        self.index = 0
        self.fields = fields
        self.min_window = min_window

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def accept(self, text: str) -> bool:
        if self.token.text == text and self.token.kind in ("word", "punct", "op"):
            self.index += 1
            return True
        return False

    def expect(self, text: str, hint: str = "") -> _Token:
        if self.token.text != text:
            raise ExpressionError(f"expected '{text}' but found {self.describe(self.token)}",
                                  self.token.column, hint)
        return self.advance()

    @staticmethod
    def describe(token: _Token) -> str:
        return "the end of the expression" if token.kind == "end" else f"'{token.text}'"

    def parse(self) -> Node:
        if self.token.kind == "end":
            raise ExpressionError("the expression is empty", 0, "write a condition such as cpu_percent > 90")
        node = self.parse_or()
        if self.token.kind != "end":
            hint = "comparisons do not chain: write a > 1 and a < 5" if self.token.kind == "op" else \
                "combine conditions with and, or, not"
            raise ExpressionError(f"unexpected {self.describe(self.token)}", self.token.column, hint)
        return node

    def parse_or(self) -> Node:
        operands = [self.parse_and()]
        while self.accept("or"):
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def parse_and(self) -> Node:
        operands = [self.parse_unary()]
        while self.accept("and"):
            operands.append(self.parse_unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def parse_unary(self) -> Node:
        if self.accept("not"):
            return Not(self.parse_unary())
        return self.parse_atom()

    def parse_atom(self) -> Node:
        token = self.token
        if self.accept("("):
            node = self.parse_or()
            self.expect(")", "every '(' needs its ')'")
            return node
        if token.kind == "word" and token.text in ("true", "false"):
            self.advance()
            return Literal(token.text == "true")
        left = self.parse_operand()
        if self.token.kind != "op":
            raise ExpressionError(
                f"expected a comparison operator after '{self.render(left)}' but found {self.describe(self.token)}",
                self.token.column, "compare a value with >, >=, <, <=, == or !=, e.g. cpu_percent > 90")
        op = self.advance().text
        right = self.parse_operand()
        return Compare(op, left, right)

    @staticmethod
    def render(operand: Operand) -> str:
        if isinstance(operand, Term):
            return operand.key
        return str(int(operand)) if operand.is_integer() else repr(operand)

    def parse_operand(self) -> Operand:
        token = self.advance()
        if token.kind == "number":
            try:
                return parse_number(token.text)
            except ValueError as error:
                unit = token.text.lstrip("-0123456789.")
                hint = "durations are only allowed as the window of avg, min, max or deviation_avg" \
                    if unit in DURATION_UNITS else "number suffixes are k, M, G (x1000) and Ki, Mi, Gi (x1024)"
                raise ExpressionError(str(error), token.column, hint) from None
        if token.kind != "word" or token.text in KEYWORDS:
            raise ExpressionError(f"expected a field, a function or a number but found {self.describe(token)}",
                                  token.column, "e.g. cpu_percent, avg(cpu_percent, 5m) or 90")
        if self.token.text == "(" and self.token.kind == "punct":
            return self.parse_call(token)
        self.check_field(token)
        return Term(Func.VALUE, token.text)

    def check_field(self, token: _Token) -> None:
        if token.text in FUNCTIONS:
            raise ExpressionError(f"'{token.text}' is a function: it needs arguments", token.column,
                                  f"e.g. {token.text}(cpu_percent)")
        if token.text not in self.fields:
            raise ExpressionError(f"unknown field '{token.text}'", token.column,
                                  "known fields: " + ", ".join(sorted(self.fields))
                                  + "; declare others in settings.fields")

    def parse_call(self, name: _Token) -> Term:
        func = FUNCTIONS.get(name.text)
        if func is None:
            raise ExpressionError(f"unknown function '{name.text}'", name.column,
                                  "functions: " + ", ".join(FUNCTIONS))
        self.expect("(")
        field = self.advance()
        if field.kind != "word" or field.text in KEYWORDS:
            raise ExpressionError(f"expected a field name but found {self.describe(field)}", field.column,
                                  f"e.g. {name.text}(cpu_percent)")
        self.check_field(field)
        window = None
        if self.accept(","):
            window = self.parse_window(func)
        self.expect(")", f"{name.text} takes a field" + (" and an optional window" if func in WINDOWED else ""))
        return Term(func, field.text, window)

    def parse_window(self, func: Func) -> float:
        token = self.advance()
        if func not in WINDOWED:
            raise ExpressionError(f"{func.value} takes no window", token.column,
                                  "deviation_last compares with the previous sample")
        try:
            seconds = parse_duration(token.text) if token.kind == "number" else None
        except ValueError:
            seconds = None
        if seconds is None:
            raise ExpressionError(f"'{token.text or 'nothing'}' is not a duration", token.column,
                                  "write a number and one unit: 90s, 5m, 1h")
        if seconds < self.min_window:
            raise ExpressionError(f"the window {token.text} is shorter than the period", token.column,
                                  "a window must be at least settings.period long")
        return seconds


def parse(text: str, fields: Collection[str] = BUILTIN_FIELDS, min_window: float = 0.0) -> Node:
    """Parse a ``when`` text. ``fields`` are the allowed field names; windows shorter than
    ``min_window`` seconds are errors. Raises :class:`ExpressionError` and nothing else."""
    return _Parser(text, fields, min_window).parse()


# --- what a tree reads, and what it says ---------------------------------------------------------


def terms(node: Node) -> frozenset[Term]:
    """Every term the tree reads."""
    if isinstance(node, Compare):
        return frozenset(x for x in (node.left, node.right) if isinstance(x, Term))
    if isinstance(node, Not):
        return terms(node.operand)
    if isinstance(node, (And, Or)):
        return frozenset().union(*(terms(x) for x in node.operands))
    return frozenset()


def evaluate(node: Node, values: Mapping[str, float | None]) -> bool | None:
    """Three-valued evaluation on one entity: ``values`` maps term keys to numbers or None."""
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Compare):
        left, right = _value(node.left, values), _value(node.right, values)
        if left is None or right is None:
            return None
        return COMPARISONS[node.op](left, right)
    if isinstance(node, Not):
        inner = evaluate(node.operand, values)
        return None if inner is None else not inner
    results = [evaluate(x, values) for x in node.operands]
    decisive = isinstance(node, Or)  # True decides an or, False decides an and
    if decisive in results:
        return decisive
    return None if None in results else not decisive


def _value(operand: Operand, values: Mapping[str, float | None]) -> float | None:
    if isinstance(operand, Term):
        return values.get(operand.key)
    return operand


def holds(node: Node, column: Callable[[str], np.ndarray], rows: int) -> np.ndarray:
    """The rows where the tree is true (unknown counts as not true), judging every row of term
    columns at once: ``column(key)`` gives a term's values as floats, NaN where it is missing."""
    return truth(node, column, rows)[0]


def truth(node: Node, column: Callable[[str], np.ndarray], rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(true, false) masks of the tree over ``rows`` rows of term columns; a row in neither is unknown."""
    if isinstance(node, Literal):
        return np.full(rows, node.value), np.full(rows, not node.value)
    if isinstance(node, Compare):
        left, right = _operand(node.left, column, rows), _operand(node.right, column, rows)
        known = ~(np.isnan(left) | np.isnan(right))
        result = COMPARISONS[node.op](left, right)
        return known & result, known & ~result
    if isinstance(node, Not):
        true, false = truth(node.operand, column, rows)
        return false, true
    parts = [truth(x, column, rows) for x in node.operands]
    trues, falses = np.array([t for t, _ in parts]), np.array([f for _, f in parts])
    if isinstance(node, Or):
        return trues.any(axis=0), falses.all(axis=0)
    return trues.all(axis=0), falses.any(axis=0)


def _operand(operand: Operand, column: Callable[[str], np.ndarray], rows: int) -> np.ndarray:
    if isinstance(operand, Term):
        return column(operand.key)
    return np.full(rows, operand, dtype=np.float64)


def render(node: Node) -> str:
    """A canonical text of the tree, fully parenthesised where precedence needs it."""
    if isinstance(node, Literal):
        return "true" if node.value else "false"
    if isinstance(node, Compare):
        return f"{_Parser.render(node.left)} {node.op} {_Parser.render(node.right)}"
    if isinstance(node, Not):
        return f"not ({render(node.operand)})"
    joiner = " or " if isinstance(node, Or) else " and "
    return joiner.join(f"({render(x)})" for x in node.operands)


__all__ = [
    "BUILTIN_FIELDS", "And", "Compare", "ExpressionError", "Literal", "Node", "Not", "Or",
    "evaluate", "holds", "parse", "parse_duration", "parse_number", "render", "terms", "truth",
]
