"""The JSONPath subset of SageMaker's ``DataProcessing`` filters (docs/transform.md), with inclusive slice ends.

Grammar (whitespace is allowed only around items inside brackets)::

    path     := "$" step*
    step     := "." name | ".*" | "." bracket | bracket
    bracket  := "[" ( "*" | quoted ("," quoted)* | item ("," item)* ) "]"
    quoted   := "'" chars "'" | '"' chars '"'          (no "." inside: nesting in brackets is not supported)
    item     := int | [int] ":" [int]                   (a slice; both bounds optional, end INCLUSIVE)

Semantics (``JsonPath.apply``):

* ``$`` is the whole value. ``.name`` / ``['name']`` select a child of an object; ``[n]`` an element of an array
  (negative counts from the end). A path made only of these is *definite* and returns the selected value itself.
* ``*`` selects every child (object values in order, or array elements); ``[n,m]`` several elements;
  ``[start:end]`` the elements ``start`` through ``end`` **inclusive**, as AWS documents it: ``$[1:4]`` on
  ``a,b,c,d,e,f`` is ``b,c,d,e`` and ``$[:5]`` is indexes 0..5 (docs/transform.md: verify against the real service when
  possible). Unions such as ``$[0:2,4:]`` are accepted (the service rejects them at run time, per object; we do
  better; docs/transform.md). Any of these makes the path indefinite: ``apply`` returns a list of the matches, in order.
* ``['a','b']`` (several names) on an object returns an object holding those keys, as Jayway JsonPath does; the
  DG-DP example ``$['id','SageMakerOutput']`` relies on it. It does not make the path indefinite.
* A missing key, an index outside the array (explicit slice bounds included), or a step applied to the wrong kind
  of value raises ``BadInput`` naming the step. Omitted slice bounds never fail, so ``$[:]`` of ``[]`` is ``[]``.
* An empty expression means ``$`` (the API's default; its minimum length is 0).

``parse`` raises ``ValidationError`` with the 0-based position of the problem; expressions are at most 63
characters (the API's limit).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from batchlane.errors import BadInput, ValidationError

MAX_LENGTH = 63

_NAME = re.compile(r"[^.\[\]'\"*,:()?\s]+")
_INT = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Child:
    """``.name`` or ``['name']``."""

    name: str


@dataclass(frozen=True)
class Names:
    """``['a','b',...]`` with two or more names: an object with those keys."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class Wildcard:
    """``*`` / ``[*]``."""


@dataclass(frozen=True)
class Index:
    """``[n]``: one element."""

    index: int


@dataclass(frozen=True)
class Slice:
    """``[start:end]`` with an inclusive end; ``None`` means the first / last element."""

    start: int | None
    end: int | None


@dataclass(frozen=True)
class Union:
    """``[n,m,a:b,...]``: indexes and slices, concatenated in the order written."""

    items: tuple[Index | Slice, ...]


Step = Child | Names | Wildcard | Index | Slice | Union


@dataclass(frozen=True)
class JsonPath:
    """A parsed expression. Build with ``parse``; evaluate with ``apply``."""

    expr: str
    steps: tuple[Step, ...]

    @property
    def is_identity(self) -> bool:
        """True for ``$`` (and the empty expression): the filter passes values through unchanged."""
        return not self.steps

    @property
    def definite(self) -> bool:
        """True when ``apply`` returns one value rather than a list of matches."""
        return not any(isinstance(step, Wildcard | Slice | Union) for step in self.steps)

    @property
    def uses_names(self) -> bool:
        """True when a step selects object keys (``.name``, ``['a','b']``): such paths never match a CSV row."""
        return any(isinstance(step, Child | Names) for step in self.steps)

    def apply(self, value: Any) -> Any:
        """Evaluate on a parsed JSON value (a CSV row is a list of str). ``BadInput`` if a step cannot apply."""
        nodes = [value]
        for position, step in enumerate(self.steps):
            where = self._prefix(position)
            selected: list[Any] = []
            for node in nodes:
                selected.extend(_select(step, node, where))
            nodes = selected
        return nodes[0] if self.definite else nodes

    def _prefix(self, position: int) -> str:
        return "$" + "".join(_render(step) for step in self.steps[: position + 1])

    def __str__(self) -> str:
        return self.expr


def _render(step: Step) -> str:
    if isinstance(step, Child):
        return f"['{step.name}']"
    if isinstance(step, Names):
        return "[" + ",".join(f"'{n}'" for n in step.names) + "]"
    if isinstance(step, Wildcard):
        return "[*]"
    if isinstance(step, Index):
        return f"[{step.index}]"
    items = step.items if isinstance(step, Union) else (step,)
    return "[" + ",".join(_render_item(item) for item in items) + "]"


def _render_item(item: Index | Slice) -> str:
    if isinstance(item, Index):
        return str(item.index)
    return f"{'' if item.start is None else item.start}:{'' if item.end is None else item.end}"


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__} value"


def _select(step: Step, node: Any, where: str) -> list[Any]:
    if isinstance(step, Child | Names):
        if not isinstance(node, dict):
            raise BadInput(f"JSONPath {where}: expected an object, got {_kind(node)}")
        names = (step.name,) if isinstance(step, Child) else step.names
        for name in names:
            if name not in node:
                raise BadInput(f"JSONPath {where}: no key {name!r} in the object")
        if isinstance(step, Child):
            return [node[step.name]]
        return [{name: node[name] for name in step.names}]
    if isinstance(step, Wildcard):
        if isinstance(node, dict):
            return list(node.values())
        if isinstance(node, list):
            return list(node)
        raise BadInput(f"JSONPath {where}: '*' needs an object or an array, got {_kind(node)}")
    if not isinstance(node, list):
        raise BadInput(f"JSONPath {where}: expected an array, got {_kind(node)}")
    items = step.items if isinstance(step, Union) else (step,)
    out: list[Any] = []
    for item in items:
        out.extend(node[i] for i in _indexes(item, len(node), where))
    return out


def _resolve(index: int, length: int, where: str) -> int:
    resolved = index + length if index < 0 else index
    if not 0 <= resolved < length:
        raise BadInput(f"JSONPath {where}: index {index} is outside the array of {length} elements")
    return resolved


def _indexes(item: Index | Slice, length: int, where: str) -> range:
    if isinstance(item, Index):
        i = _resolve(item.index, length, where)
        return range(i, i + 1)
    start = 0 if item.start is None else _resolve(item.start, length, where)
    end = length - 1 if item.end is None else _resolve(item.end, length, where)
    if start > end and item.start is not None and item.end is not None:
        raise BadInput(f"JSONPath {where}: slice start {item.start} comes after its end {item.end}")
    return range(start, end + 1)


class _Parser:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.pos = 0

    def fail(self, message: str, pos: int | None = None) -> ValidationError:
        at = self.pos if pos is None else pos
        return ValidationError(f"Invalid JsonPath {self.expr!r} at position {at}: {message}")

    def peek(self) -> str:
        return self.expr[self.pos] if self.pos < len(self.expr) else ""

    def skip_spaces(self) -> None:
        while self.peek() in (" ", "\t"):
            self.pos += 1

    def parse(self) -> tuple[Step, ...]:
        if self.peek() != "$":
            raise self.fail("a path must begin with '$'")
        self.pos = 1
        steps: list[Step] = []
        while self.pos < len(self.expr):
            char = self.peek()
            if char == ".":
                self.pos += 1
                nxt = self.peek()
                if nxt == ".":
                    raise self.fail("recursive descent '..' is not supported", self.pos - 1)
                if nxt == "*":
                    self.pos += 1
                    steps.append(Wildcard())
                elif nxt == "[":
                    steps.append(self.bracket())
                else:
                    match = _NAME.match(self.expr, self.pos)
                    if not match:
                        raise self.fail("expected a name, '*' or '[' after '.'")
                    steps.append(Child(match.group()))
                    self.pos = match.end()
            elif char == "[":
                steps.append(self.bracket())
            else:
                raise self.fail(f"unexpected {char!r}; expected '.' or '['")
        return tuple(steps)

    def bracket(self) -> Step:
        self.pos += 1  # "["
        self.skip_spaces()
        char = self.peek()
        if char == "*":
            self.pos += 1
            step: Step = Wildcard()
        elif char in ("'", '"'):
            names = [self.quoted()]
            while self.comma():
                names.append(self.quoted())
            step = Child(names[0]) if len(names) == 1 else Names(tuple(names))
        elif char == "?" or char == "(":
            raise self.fail("filter and script expressions are not supported")
        else:
            items = [self.item()]
            while self.comma():
                items.append(self.item())
            step = items[0] if len(items) == 1 else Union(tuple(items))
        self.skip_spaces()
        if self.peek() != "]":
            raise self.fail(
                "expected ']'" if self.peek() == "" else f"unexpected {self.peek()!r}; expected ']'"
            )
        self.pos += 1
        return step

    def comma(self) -> bool:
        self.skip_spaces()
        if self.peek() == ",":
            self.pos += 1
            self.skip_spaces()
            return True
        return False

    def quoted(self) -> str:
        quote = self.peek()
        if quote not in ("'", '"'):
            raise self.fail("expected a quoted name")
        start = self.pos
        end = self.expr.find(quote, start + 1)
        if end < 0:
            raise self.fail("unterminated quoted name", start)
        name = self.expr[start + 1 : end]
        if not name:
            raise self.fail("empty name", start)
        if "." in name:
            raise self.fail("nested paths inside brackets are not supported", start)
        self.pos = end + 1
        return name

    def integer(self) -> int | None:
        match = _INT.match(self.expr, self.pos)
        if not match:
            return None
        self.pos = match.end()
        return int(match.group())

    def item(self) -> Index | Slice:
        start_pos = self.pos
        start = self.integer()
        self.skip_spaces()
        if self.peek() != ":":
            if start is None:
                raise self.fail("expected an index, a slice, a quoted name or '*'")
            return Index(start)
        self.pos += 1
        self.skip_spaces()
        end = self.integer()
        if self.peek() == ":":
            raise self.fail("slice steps are not supported")
        if start is not None and end is not None and (start < 0) == (end < 0) and start > end:
            raise self.fail(f"slice start {start} comes after its end {end}", start_pos)
        return Slice(start, end)


def parse(expr: str) -> JsonPath:
    """Parse ``expr``; ``ValidationError`` naming the position of the first problem. ``""`` means ``$``."""
    if not isinstance(expr, str):
        raise ValidationError(f"Invalid JsonPath {expr!r}: must be a string")
    if len(expr) > MAX_LENGTH:
        raise ValidationError(
            f"Invalid JsonPath {expr!r}: {len(expr)} characters, at most {MAX_LENGTH} are allowed"
        )
    if expr == "":
        return JsonPath("$", ())
    return JsonPath(expr, _Parser(expr).parse())


IDENTITY = JsonPath("$", ())
