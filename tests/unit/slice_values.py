"""Hypothesis strategies for any value a Slice type admits, read from the project's own slice/.

The fuzzer of every operation (test_fuzz_inputs.py) takes its inputs from here, so a new
operation, parameter, struct or field is fuzzed the day it is declared. The reader knows what
slice/ uses: modules, enums, structs (with default values), sequences, dictionaries,
exceptions and interfaces with in-parameters. Every value drawn is one Ice could deliver to a
servant: Ice itself refuses, on the caller's side, what does not fit the Slice type (a string
that is not UTF-8 never reaches a Python servant; services.common.servants answers it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from services.common.contract import PushGrid

SLICE = Path(__file__).resolve().parents[2] / "slice"

# Strings a partner or device would try: ids of the right shape and of none, empty, NUL, long.
TEXT = st.text(max_size=120) | st.sampled_from(["f" * 24, "0" * 24, "", " ", "\x00", "r1", "a" * 10_000])
INTEGERS = {
    "byte": st.integers(0, 255),
    "short": st.integers(-(2**15), 2**15 - 1),
    "int": st.integers(-(2**31), 2**31 - 1) | st.sampled_from([0, 1, -1]),
    "long": st.integers(-(2**63), 2**63 - 1) | st.sampled_from([0, 1, -1, 2**53]),
}


@dataclass
class Operation:
    name: str
    params: list[tuple[str, str]]  # (Slice type, name), in order


@dataclass
class Model:
    sequences: dict[str, str] = field(default_factory=dict)
    dictionaries: dict[str, tuple[str, str]] = field(default_factory=dict)
    enums: set[str] = field(default_factory=set)
    structs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    interfaces: dict[str, list[Operation]] = field(default_factory=dict)


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _body(text: str, start: int) -> tuple[str, int]:
    """The text between the brace at or after start and its match, and the index past it."""
    open_at = text.index("{", start)
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_at + 1 : i], i + 1
    raise ValueError("unbalanced braces in slice/")


@cache
def model() -> Model:
    m = Model()
    for path in sorted(SLICE.glob("*.ice")):
        text = _strip_comments(path.read_text(encoding="utf-8"))
        for elem, name in re.findall(r"sequence<\s*([\w:]+)\s*>\s+(\w+)\s*;", text):
            m.sequences[name] = elem
        for key, value, name in re.findall(r"dictionary<\s*([\w:]+)\s*,\s*([\w:]+)\s*>\s+(\w+)\s*;", text):
            m.dictionaries[name] = (key, value)
        m.enums.update(re.findall(r"\benum\s+(\w+)", text))
        for found in re.finditer(r"\bstruct\s+(\w+)", text):
            body, _ = _body(text, found.end())
            members = re.findall(r"([\w:]+)\s+(\w+)\s*(?:=[^;]*)?;", body)
            m.structs[found.group(1)] = [(t, n) for t, n in members]
        for found in re.finditer(r"\binterface\s+(\w+)", text):
            body, _ = _body(text, found.end())
            ops = []
            for _ret, name, params in re.findall(r"(?:idempotent\s+)?([\w:<>*]+)\s+(\w+)\s*\(([^)]*)\)", body):
                pairs = [p.split() for p in params.split(",") if p.strip()]
                ops.append(Operation(name, [(t, n) for t, n in pairs]))
            m.interfaces[found.group(1)] = ops
    return m


def strategy(slice_type: str) -> st.SearchStrategy[Any]:
    """Any value of a Slice type, as Ice for Python hands it to a servant."""
    m = model()
    name = slice_type.split("::")[-1]
    if name == "string":
        return TEXT
    if name == "bool":
        return st.booleans()
    if name in INTEGERS:
        return INTEGERS[name]
    if name in ("float", "double"):
        return st.floats(allow_nan=True, allow_infinity=True)
    if name in m.sequences:
        return st.lists(strategy(m.sequences[name]), max_size=12)
    if name in m.dictionaries:
        key, value = m.dictionaries[name]
        return st.dictionaries(strategy(key), strategy(value), max_size=6)
    cls = getattr(PushGrid, name)
    if name in m.enums:
        return st.sampled_from(list(cls._enumerators.values()))
    if name in m.structs:
        members = m.structs[name]
        return st.builds(lambda *values: cls(*values), *[st.deferred(lambda t=t: strategy(t)) for t, _ in members])
    raise LookupError(f"no strategy for Slice type {slice_type}")


def arguments(interface: str, operation: str) -> st.SearchStrategy[tuple[Any, ...]]:
    """The in-parameters of one operation."""
    op = next(o for o in model().interfaces[interface] if o.name == operation)
    return st.tuples(*[strategy(t) for t, _ in op.params])


def operations(interface: str) -> list[str]:
    return [o.name for o in model().interfaces[interface]]
