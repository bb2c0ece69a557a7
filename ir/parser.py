"""Reads the text form written by ir/printer.py back into a Graph.

Output types are inferred by `Graph.add_node`; where the text also writes them
(`%y: float32[1,8] = ...`) they are checked. Every error names the line.
"""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelError, NnforgeError, ShapeError
from .graph import Graph
from .types import TensorType

_TOKEN = re.compile(r"""\s*(?:
    (?P<b64>b64"[A-Za-z0-9+/=]*")
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<name>%(?:[A-Za-z0-9_.]+|"(?:[^"\\]|\\.)*"))
  | (?P<number>[-+]?(?:(?:inf|nan)(?![\w.])|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))
  | (?P<ident>[A-Za-z_][\w.]*)
  | (?P<elided><elided>)
  | (?P<punct>[()\[\]{},=:])
)""", re.VERBOSE)


def _syntax_error(lineno: int, message: str, line: str) -> ModelError:
    return ModelError(f"line {lineno}: {message}: {line.strip()!r}")


class _Tokens:
    """The tokens of one line, consumed left to right."""

    def __init__(self, line: str, lineno: int):
        self.line, self.lineno, self.items, pos = line, lineno, [], 0
        text = line.rstrip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise _syntax_error(lineno, f"unexpected character at column {pos + 1}", line)
            self.items.append((m.lastgroup, m.group(m.lastgroup)))
            pos = m.end()
        self.pos = 0

    def error(self, message: str) -> ModelError:
        return _syntax_error(self.lineno, message, self.line)

    def peek(self) -> tuple:
        return self.items[self.pos] if self.pos < len(self.items) else ("end", "")

    def accept(self, kind: str, text: str | None = None) -> str | None:
        """Consume and return the next token's text if it matches, else None."""
        k, t = self.peek()
        if k == kind and (text is None or t == text):
            self.pos += 1
            return t
        return None

    def expect(self, kind: str, text: str | None = None) -> str:
        got = self.accept(kind, text)
        if got is None:
            k, t = self.peek()
            raise self.error(f"expected {text or kind}, found {t or 'end of line'}")
        return got

    def done(self):
        if self.pos != len(self.items):
            raise self.error(f"unexpected {self.peek()[1]!r}")

    # -- grammar pieces ----------------------------------------------------
    def value_name(self) -> str:
        text = self.expect("name")[1:]
        return json.loads(text) if text.startswith('"') else text

    def type(self) -> TensorType:
        dtype = self.expect("ident")
        dims = self.bracketed(self.integer)
        try:
            return TensorType(dtype, dims)
        except (TypeError, ValueError, NnforgeError):
            raise self.error(f"bad type {dtype}{dims}") from None

    def integer(self) -> int:
        text = self.expect("number")
        if not text.lstrip("+-").isdigit():
            raise self.error(f"expected an integer, found {text}")
        return int(text)

    def sequence(self, close: str, item) -> list:
        """`item, item, ... close` (possibly empty), after the opening bracket."""
        values = []
        while not self.accept("punct", close):
            if values and not self.accept("punct", ","):
                raise self.error(f"expected ',' or '{close}', found "
                                 f"{self.peek()[1] or 'end of line'}")
            values.append(item())
        return values

    def bracketed(self, item) -> list:
        """`[item, item, ...]` (possibly empty)."""
        self.expect("punct", "[")
        return self.sequence("]", item)

    def attribute(self) -> tuple:
        """`key=value` with a scalar or a bracketed list as the value."""
        key = self.expect("ident")
        self.expect("punct", "=")
        return key, self.bracketed(self.scalar) if self.peek() == ("punct", "[") else self.scalar()

    def parameter(self) -> tuple:
        """`%name: type`."""
        name = self.value_name()
        self.expect("punct", ":")
        return name, self.type()

    def scalar(self):
        """A number, true/false or a string, as a Python value."""
        if (text := self.accept("number")) is not None:
            return float(text) if any(c in text for c in ".eEni") else int(text)
        if (text := self.accept("string")) is not None:
            return json.loads(text)
        word = self.expect("ident")
        if word not in ("true", "false"):
            raise self.error(f"expected a value, found {word}")
        return word == "true"


@dataclass
class _Statement:
    lineno: int
    outputs: list  # [(name, TensorType | None)]
    op: str = ""  # "const" for constants
    args: list = field(default_factory=list)
    attrs: dict = field(default_factory=dict)
    const_type: TensorType | None = None
    const_value: object = None  # list of values, bytes, or None for <elided>


def _parse_statement(tokens: _Tokens) -> _Statement:
    outputs = []
    while True:
        name = tokens.value_name()
        outputs.append((name, tokens.type() if tokens.accept("punct", ":") else None))
        if not tokens.accept("punct", ","):
            break
    tokens.expect("punct", "=")
    op = tokens.expect("ident")
    stmt = _Statement(tokens.lineno, outputs, op)
    if op == "const":
        stmt.const_type = tokens.type()
        if tokens.accept("elided") is None:
            blob = tokens.accept("b64")
            stmt.const_value = (base64.b64decode(blob[4:-1]) if blob
                                else tokens.bracketed(tokens.scalar))
    else:
        tokens.expect("punct", "(")
        stmt.args = tokens.sequence(")", tokens.value_name)
        if tokens.accept("punct", "{"):
            stmt.attrs = dict(tokens.sequence("}", tokens.attribute))
    tokens.done()
    return stmt


def _constant_array(stmt: _Statement, name: str, constants: dict) -> np.ndarray:
    t = stmt.const_type
    if stmt.const_value is None:
        if name not in constants:
            raise ModelError(f"line {stmt.lineno}: constant %{name} is <elided>; pass its data "
                             f"as parse_graph(..., constants={{{name!r}: array}})")
        data = np.asarray(constants[name])
    elif isinstance(stmt.const_value, bytes):
        little = np.dtype(t.dtype).newbyteorder("<")
        if len(stmt.const_value) != t.nbytes:
            raise ModelError(f"line {stmt.lineno}: constant %{name} has {len(stmt.const_value)} "
                             f"bytes, its type {t} needs {t.nbytes}")
        data = np.frombuffer(stmt.const_value, dtype=little).astype(t.dtype).reshape(t.shape)
    else:
        if len(stmt.const_value) != t.numel:
            raise ModelError(f"line {stmt.lineno}: constant %{name} lists {len(stmt.const_value)} "
                             f"values, its type {t} has {t.numel}")
        data = np.array(stmt.const_value, dtype=t.dtype).reshape(t.shape)
    if TensorType.of(data) != t:
        raise ShapeError(f"line {stmt.lineno}: constant %{name} is written as {t}, "
                         f"its data is {TensorType.of(data)}")
    return data


def _free_node_name(op: str, graph: Graph, reserved: set) -> str:
    """A node name derived from `op` that clashes with no value of the text (those must keep
    their written names) nor with anything already in the graph."""
    base = name = op.lower()
    suffix = 0
    while name in reserved or name in graph._names:
        suffix += 1
        name = f"{base}_{suffix}"
    return name


def _add_statement(graph: Graph, stmt: _Statement, env: dict, constants: dict, reserved: set):
    names = [n for n, _ in stmt.outputs]
    for n in names:
        if n in env:
            raise ModelError(f"line {stmt.lineno}: %{n} is defined twice")
    if stmt.op == "const":
        if len(names) != 1:
            raise ModelError(f"line {stmt.lineno}: a const defines exactly one value")
        values = [graph.constant(_constant_array(stmt, names[0], constants), name=names[0])]
    else:
        missing = [a for a in stmt.args if a not in env]
        if missing:
            raise ModelError(f"line {stmt.lineno}: %{missing[0]} is used before it is defined")
        try:
            values = graph.add_node(stmt.op, [env[a] for a in stmt.args], stmt.attrs,
                                    name=_free_node_name(stmt.op, graph, reserved),
                                    output_names=names)
        except NnforgeError as e:
            raise type(e)(f"line {stmt.lineno}: {e}") from None
        if len(values) != len(names):
            raise ShapeError(f"line {stmt.lineno}: {stmt.op} has {len(values)} outputs, "
                             f"the text names {len(names)}")
    for value, (name, written) in zip(values, stmt.outputs):
        if value.name != name:  # Graph renamed it: the name was taken
            raise ModelError(f"line {stmt.lineno}: %{name} is defined twice")
        if written is not None and written != value.type:
            raise ShapeError(f"line {stmt.lineno}: %{name} is written as {written}, "
                             f"inference gives {value.type}")
        env[name] = value


def parse_graph(text: str, *, constants: dict | None = None) -> Graph:
    """Build a Graph from its text form (see ir/printer.py).

    Args:
        text: the graph text.
        constants: data for constants written as `<elided>`, by value name.
    Returns:
        the Graph; raises ModelError (syntax, undefined or missing names) or ShapeError
        (types that disagree with inference), each naming the line.
    """
    lines = [(i, line) for i, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise ModelError("empty graph text")
    lineno, header = lines[0]
    tokens = _Tokens(header, lineno)
    tokens.expect("ident", "graph")
    graph_name = tokens.accept("ident") or json.loads(tokens.expect("string"))
    tokens.expect("punct", "(")
    params = tokens.sequence(")", tokens.parameter)
    tokens.expect("punct", "{")
    tokens.done()

    statements, returns, closed = [], None, False
    for lineno, line in lines[1:]:
        tokens = _Tokens(line, lineno)
        if closed:
            raise tokens.error("text after the closing brace")
        if tokens.accept("punct", "}"):
            tokens.done()
            closed = True
        elif returns is not None:
            raise tokens.error("only the closing brace may follow return")
        elif tokens.accept("ident", "return"):
            names = [tokens.value_name()] if tokens.peek()[0] == "name" else []
            while tokens.accept("punct", ","):
                names.append(tokens.value_name())
            tokens.done()
            returns = (lineno, names)
        else:
            statements.append(_parse_statement(tokens))
    if not closed or returns is None:
        raise ModelError(f"line {lines[-1][0]}: graph text must end with a return line and '}}'")

    graph = Graph(graph_name)
    env = {}
    for name, t in params:
        if name in env:
            raise ModelError(f"line {lines[0][0]}: input %{name} is declared twice")
        env[name] = graph.add_input(name, t)
    reserved = set(env) | {n for s in statements for n, _ in s.outputs}
    for stmt in statements:
        _add_statement(graph, stmt, env, constants or {}, reserved)
    lineno, names = returns
    undefined = [n for n in names if n not in env]
    if undefined:
        raise ModelError(f"line {lineno}: returned value %{undefined[0]} is not defined")
    graph.set_outputs([env[n] for n in names])
    return graph
