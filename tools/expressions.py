"""GitHub Actions expressions (`${{ }}`, `if:`), parsed into a tree instead of searched as text.

A guard is only a guard when the whole condition needs it: `A && B` needs both, `A || true`
needs neither. So the workflow rules ask which comparisons an `if:` *requires* (the conjuncts at
its top level), on a parse tree that follows GitHub's grammar: literals, contexts with `.name`
and `[index]`, function calls, `!`, comparisons, `&&` and `||`, parentheses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from raybake.errors import ExitCode, RaybakeError

_TOKEN = re.compile(
    r"\s*(?:(?P<number>-?\d+(?:\.\d+)?)|(?P<string>'(?:[^']|'')*')|(?P<op>==|!=|<=|>=|&&|\|\||[()\[\].,!<>*])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)
_BINARY = {"||": 1, "&&": 2, "==": 3, "!=": 3, "<": 4, "<=": 4, ">": 4, ">=": 4}


@dataclass(frozen=True)
class Node:
    kind: str  # literal, context, call, not, binary
    value: str = ""  # the literal, context path, function name or operator
    args: tuple[Node, ...] = ()

    def __str__(self) -> str:
        if self.kind == "binary":
            return f"({self.args[0]} {self.value} {self.args[1]})"
        if self.kind == "not":
            return f"!{self.args[0]}"
        if self.kind == "call":
            return f"{self.value}({', '.join(map(str, self.args))})"
        return self.value


def _tokens(text: str) -> list[tuple[str, str]]:
    found, at = [], 0
    text = text.strip()
    while at < len(text):
        match = _TOKEN.match(text, at)
        if not match or match.end() == at:
            raise RaybakeError(f"cannot parse expression {text!r} at {text[at:]!r}", ExitCode.REFUSED)
        kind = match.lastgroup or ""
        found.append((kind, match.group(kind)))
        at = match.end()
    return found


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise RaybakeError(f"cannot parse expression {self.text!r}: expected {value or 'more'}", ExitCode.REFUSED)
        self.at += 1
        return token

    def expression(self, least: int = 1) -> Node:
        left = self.unary()
        while (token := self.peek()) and token[0] == "op" and _BINARY.get(token[1], 0) >= least:
            op = self.take()[1]
            right = self.expression(_BINARY[op] + 1)
            left = Node("binary", op, (left, right))
        return left

    def unary(self) -> Node:
        if self.peek() == ("op", "!"):
            self.take()
            return Node("not", "!", (self.unary(),))
        return self.primary()

    def primary(self) -> Node:
        kind, value = self.take()
        if value == "(" and kind == "op":
            inner = self.expression()
            self.take(")")
            return inner
        if kind in ("number", "string") or value in ("true", "false", "null"):
            return Node("literal", value.lower() if kind == "string" else value)
        if kind != "name":
            raise RaybakeError(f"cannot parse expression {self.text!r} at {value!r}", ExitCode.REFUSED)
        if self.peek() == ("op", "("):
            self.take()
            args = []
            while self.peek() != ("op", ")"):
                args.append(self.expression())
                if self.peek() == ("op", ","):
                    self.take()
            self.take(")")
            call = Node("call", value.lower(), tuple(args))
            return self.postfix(call) if self.peek() in (("op", "."), ("op", "[")) else call
        return self.postfix(Node("context", value))

    def postfix(self, base: Node) -> Node:
        """`.name` and `[index]` after a context or a call: one context path, read as written."""
        path = str(base)
        while (token := self.peek()) and token[1] in (".", "["):
            if self.take()[1] == ".":
                path += "." + self.take()[1]
            else:
                path += f"[{self.expression()}]"
                self.take("]")
        return Node("context", path, base.args)


def parse(text: str) -> Node:
    """The tree of an expression, with or without its `${{ }}`; an `if:` may omit them."""
    text = text.strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    parser = _Parser(text)
    node = parser.expression()
    if (left := parser.peek()) is not None:
        raise RaybakeError(f"cannot parse expression {text!r}: {left[1]!r} left over", ExitCode.REFUSED)
    return node


def conjuncts(node: Node) -> list[Node]:
    """The parts an expression requires: its `&&` operands at the top level, itself otherwise."""
    if node.kind == "binary" and node.value == "&&":
        return [*conjuncts(node.args[0]), *conjuncts(node.args[1])]
    return [node]


def requires(condition: str, needed: str) -> bool:
    """Whether `condition` holds only when `needed` does: `needed` is one of its top-level conjuncts.

    Comparisons match either way round (`a == b` is `b == a`); GitHub compares strings ignoring
    case, so the parse lower-cases string literals."""
    want = parse(needed)
    flipped = {want}
    if want.kind == "binary" and want.value in ("==", "!="):
        flipped.add(Node("binary", want.value, (want.args[1], want.args[0])))
    return any(part in flipped for part in conjuncts(parse(condition)))


def contexts(node: Node) -> set[str]:
    """Every context path the expression reads (`github.event.label.name`, `secrets.X`)."""
    found = {node.value} if node.kind == "context" else set()
    for arg in node.args:
        found |= contexts(arg)
    return found


def embedded(text: str) -> list[Node]:
    """The `${{ }}` expressions inside a string, parsed."""
    return [parse(body) for body in re.findall(r"\$\{\{(.*?)\}\}", text, flags=re.DOTALL)]
