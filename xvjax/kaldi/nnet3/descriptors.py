"""nnet3 Descriptors (`src/nnet3/nnet-descriptor.cc`): parsing, Kaldi's normalisation, printing.

A descriptor says what a node reads: `Append(Offset(input, -2), input, Offset(input, 2))`,
`Round(stats-pooling-0-10000, 1)`, `Sum(a, Scale(0.5, b))`, `IfDefined(Offset(x, -3))`...

`parse_descriptor(text)` tokenises like `DescriptorTokenize`, builds the general expression tree,
normalises it exactly as `GeneralDescriptor::GetNormalizedDescriptor` does (Append hoisted to the
top, nested Offsets merged, `Offset(x, 0)` dropped, Offset/Round/ReplaceIndex/Switch pushed inside
Sum/Failover/IfDefined, `Sum(a, b, c)` -> `Sum(a, Sum(b, c))`, Scale pushed down to node names) and
returns the frozen AST below. `str(desc)` prints it the way Kaldi writes it in a model's config
section (`Descriptor::WriteConfig`), so parse -> str is Kaldi's normal form.

AST: NodeRef(name), Offset(src, t, x=0), Append(parts), Sum(a, b), Failover(a, b), IfDefined(src),
Switch(parts), Round(src, modulus), ReplaceIndex(src, var, value), Scale(scale, src),
Const(value, dim). `node_names(desc)` lists the referenced nodes.
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

from xvjax.errors import XvjaxError

KEYWORDS = (
    "Append", "Sum", "Failover", "IfDefined", "Offset", "Switch", "Scale", "Const", "Round",
    "ReplaceIndex",
)  # fmt: skip


def _fmt_real(x: float) -> str:
    """C++ ostringstream default (precision 6) printing of a float."""
    return f"{x:g}"


# ---------------------------------------------------------------------------- AST


class Descriptor:
    """Base class of the frozen descriptor AST nodes."""


@dataclasses.dataclass(frozen=True)
class NodeRef(Descriptor):
    name: str

    def __str__(self) -> str:
        return self.name


@dataclasses.dataclass(frozen=True)
class Scale(Descriptor):
    scale: float
    src: Descriptor

    def __str__(self) -> str:
        return f"Scale({_fmt_real(self.scale)}, {self.src})"


@dataclasses.dataclass(frozen=True)
class Offset(Descriptor):
    src: Descriptor
    t: int
    x: int = 0

    def __str__(self) -> str:
        tail = f", {self.x}" if self.x != 0 else ""
        return f"Offset({self.src}, {self.t}{tail})"


@dataclasses.dataclass(frozen=True)
class Round(Descriptor):
    src: Descriptor
    modulus: int

    def __str__(self) -> str:
        return f"Round({self.src}, {self.modulus})"


@dataclasses.dataclass(frozen=True)
class ReplaceIndex(Descriptor):
    src: Descriptor
    var: str  # "t" or "x"
    value: int

    def __str__(self) -> str:
        return f"ReplaceIndex({self.src}, {self.var}, {self.value})"


@dataclasses.dataclass(frozen=True)
class Switch(Descriptor):
    parts: tuple[Descriptor, ...]

    def __str__(self) -> str:
        return "Switch(" + ", ".join(map(str, self.parts)) + ")"


@dataclasses.dataclass(frozen=True)
class Sum(Descriptor):
    a: Descriptor
    b: Descriptor

    def __str__(self) -> str:
        return f"Sum({self.a}, {self.b})"


@dataclasses.dataclass(frozen=True)
class Failover(Descriptor):
    a: Descriptor
    b: Descriptor

    def __str__(self) -> str:
        return f"Failover({self.a}, {self.b})"


@dataclasses.dataclass(frozen=True)
class IfDefined(Descriptor):
    src: Descriptor

    def __str__(self) -> str:
        return f"IfDefined({self.src})"


@dataclasses.dataclass(frozen=True)
class Const(Descriptor):
    value: float
    dim: int

    def __str__(self) -> str:
        return f"Const({_fmt_real(self.value)}, {self.dim})"


@dataclasses.dataclass(frozen=True)
class Append(Descriptor):
    parts: tuple[Descriptor, ...]

    def __str__(self) -> str:
        if len(self.parts) == 1:
            return str(self.parts[0])
        return "Append(" + ", ".join(map(str, self.parts)) + ")"


def node_names(desc: Descriptor) -> list[str]:
    """Names of the nodes a descriptor reads, in order of appearance (with repeats removed)."""
    out: list[str] = []

    def visit(d: Descriptor) -> None:
        if isinstance(d, NodeRef):
            if d.name not in out:
                out.append(d.name)
        elif isinstance(d, Const):
            pass
        else:
            for f in dataclasses.fields(d):
                v = getattr(d, f.name)
                if isinstance(v, Descriptor):
                    visit(v)
                elif isinstance(v, tuple):
                    for p in v:
                        visit(p)

    visit(desc)
    return out


def modulus(desc: Descriptor) -> int:
    """`Descriptor::Modulus()`: lcm of Round moduli and Switch sizes."""
    if isinstance(desc, Round):
        return math.lcm(desc.modulus, modulus(desc.src))
    if isinstance(desc, Switch):
        ans = len(desc.parts)
        for p in desc.parts:
            ans = math.lcm(ans, modulus(p))
        return ans
    if isinstance(desc, (Append,)):
        ans = 1
        for p in desc.parts:
            ans = math.lcm(ans, modulus(p))
        return ans
    if isinstance(desc, (Sum, Failover)):
        return math.lcm(modulus(desc.a), modulus(desc.b))
    if isinstance(desc, (Offset, ReplaceIndex, IfDefined, Scale)):
        return modulus(desc.src)
    return 1


def map_node_names(desc: Descriptor, fn) -> Descriptor:
    """A copy of `desc` with every NodeRef name replaced by fn(name)."""
    if isinstance(desc, NodeRef):
        return NodeRef(fn(desc.name))
    if isinstance(desc, Const):
        return desc
    kwargs = {}
    for f in dataclasses.fields(desc):
        v = getattr(desc, f.name)
        if isinstance(v, Descriptor):
            v = map_node_names(v, fn)
        elif isinstance(v, tuple):
            v = tuple(map_node_names(p, fn) for p in v)
        kwargs[f.name] = v
    return type(desc)(**kwargs)


# ---------------------------------------------------------------------------- parsing

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_INT_RE = re.compile(r"^[+-]?\d+$")


def is_valid_name(name: str) -> bool:
    """Kaldi's IsValidName: letter or '_' first, then letters, digits, '_', '-', '.'."""
    return bool(_NAME_RE.match(name))


def tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    for piece in re.findall(r"[(),]|[^\s(),]+", text):
        tokens.append(piece)
    return tokens


class _G:
    """Mutable general descriptor (GeneralDescriptor) used during normalisation."""

    __slots__ = ("kind", "kids", "v1", "v2", "alpha", "name")

    def __init__(self, kind, kids=None, v1=0, v2=0, alpha=0.0, name=None):
        self.kind = kind
        self.kids = kids if kids is not None else []
        self.v1, self.v2, self.alpha, self.name = v1, v2, alpha, name

    def copy_shallow(self) -> _G:
        return _G(self.kind, [], self.v1, self.v2, self.alpha, self.name)


class _Parser:
    def __init__(self, text: str, where: str):
        self.text = text
        self.where = where
        self.tokens = tokenize(text)
        self.i = 0

    def error(self, msg: str) -> XvjaxError:
        rest = " ".join(self.tokens[self.i : self.i + 6])
        return XvjaxError(f"{self.where}: {msg} in descriptor '{self.text}' (near '{rest}')")

    def peek(self) -> str:
        return self.tokens[self.i] if self.i < len(self.tokens) else "end of input"

    def take(self) -> str:
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, tok: str, what: str) -> None:
        got = self.take()
        if got != tok:
            raise self.error(f"expected '{tok}' while parsing {what}, got '{got}'")

    def integer(self, what: str) -> int:
        tok = self.take()
        if not _INT_RE.match(tok):
            raise self.error(f"expected integer while parsing {what}, got '{tok}'")
        return int(tok)

    def real(self, what: str) -> float:
        tok = self.take()
        try:
            return float(np.float32(float(tok)))
        except ValueError:
            raise self.error(f"expected a number while parsing {what}, got '{tok}'") from None

    def parse(self) -> _G:
        tok = self.take()
        if tok in KEYWORDS:
            self.expect("(", tok)
            if tok in ("Append", "Sum", "Switch"):
                g = _G(tok, [self.parse()])
                while True:
                    nxt = self.take()
                    if nxt == ")":
                        return g
                    if nxt != ",":
                        raise self.error(f"expected ',' or ')' in {tok}(), got '{nxt}'")
                    g.kids.append(self.parse())
            if tok == "IfDefined":
                g = _G(tok, [self.parse()])
                self.expect(")", tok)
                return g
            if tok == "Failover":
                g = _G(tok, [self.parse()])
                self.expect(",", tok)
                g.kids.append(self.parse())
                self.expect(")", tok)
                return g
            if tok == "Offset":
                g = _G(tok, [self.parse()])
                self.expect(",", tok)
                g.v1 = self.integer(tok)
                if self.peek() == ",":
                    self.take()
                    g.v2 = self.integer(tok)
                self.expect(")", tok)
                return g
            if tok == "Round":
                g = _G(tok, [self.parse()])
                self.expect(",", tok)
                g.v1 = self.integer(tok)
                self.expect(")", tok)
                return g
            if tok == "ReplaceIndex":
                g = _G(tok, [self.parse()])
                self.expect(",", tok)
                var = self.take()
                if var not in ("t", "x"):
                    raise self.error(f"expected 't' or 'x' in ReplaceIndex(), got '{var}'")
                g.name = var
                self.expect(",", tok)
                g.v2 = self.integer(tok)
                self.expect(")", tok)
                return g
            if tok == "Scale":
                g = _G(tok, alpha=self.real(tok))
                self.expect(",", tok)
                g.kids.append(self.parse())
                self.expect(")", tok)
                return g
            # Const
            g = _G(tok, alpha=self.real(tok))
            self.expect(",", tok)
            g.v1 = self.integer(tok)
            if g.v1 <= 0:
                raise self.error("Const() needs a positive dimension")
            self.expect(")", tok)
            return g
        if tok in ("(", ")", ",", "end of input"):
            raise self.error(f"expected a descriptor, got '{tok}'")
        if self.peek() == "(":
            raise self.error(f"unknown descriptor '{tok}'")
        if not is_valid_name(tok):
            raise self.error(f"invalid node name '{tok}'")
        return _G("node", name=tok)


def _num_append_terms(g: _G) -> int:
    if g.kind in ("node", "Const"):
        return 1
    if g.kind == "Append":
        return sum(_num_append_terms(k) for k in g.kids)
    n = _num_append_terms(g.kids[0])
    for k in g.kids[1:]:
        if _num_append_terms(k) != n:
            raise XvjaxError(f"inconsistent numbers of Append() terms inside {g.kind}()")
    return n


def _append_term(g: _G, term: int) -> _G:
    if g.kind == "node":
        return g.copy_shallow()
    if g.kind == "Append":
        cur = term
        for k in g.kids:
            n = _num_append_terms(k)
            if cur < n:
                return _append_term(k, cur)
            cur -= n
        raise XvjaxError("descriptor normalisation error (append term)")
    ans = g.copy_shallow()
    ans.kids = [_append_term(k, term) for k in g.kids]
    return ans


def _normalize_append(g: _G) -> _G:
    n = _num_append_terms(g)
    if n == 1:
        return _append_term(g, 0)
    return _G("Append", [_append_term(g, i) for i in range(n)])


def _assign(dst: _G, src: _G) -> None:
    dst.kind, dst.kids, dst.v1, dst.v2 = src.kind, src.kids, src.v1, src.v2
    dst.alpha, dst.name = src.alpha, src.name


def _normalize(d: _G) -> bool:
    """One pass of GeneralDescriptor::Normalize (same rewrite order as Kaldi)."""
    changed = False
    kind = d.kind
    fall_through = False
    if kind == "Offset":
        child = d.kids[0]
        if child.kind == "Offset":
            d.v1 += child.v1
            d.v2 += child.v2
            d.kids[0] = child.kids[0]
            changed = True
            fall_through = True
        elif d.v1 == 0 and d.v2 == 0:
            _assign(d, child)
            changed = True
        else:
            fall_through = True
    if kind in ("Switch", "Round", "ReplaceIndex") or fall_through:
        child = d.kids[0]
        if child.kind in ("Sum", "Failover", "IfDefined"):
            if len(d.kids) > 1:
                raise XvjaxError(
                    "Sum(), Failover() or IfDefined() inside Switch() cannot be normalized"
                )
            new_kids = []
            for grandchild in child.kids:
                mod = _G(d.kind, [grandchild], d.v1, d.v2, d.alpha, d.name)
                new_kids.append(mod)
            d.kind, d.v1, d.v2, d.kids = child.kind, child.v1, child.v2, new_kids
            d.name = child.name
            changed = True
    elif kind == "Sum":
        if len(d.kids) == 1:
            _assign(d, d.kids[0])
            changed = True
        elif len(d.kids) > 2:
            d.kids = [d.kids[0], _G("Sum", d.kids[1:])]
            changed = True
    elif kind == "Scale":
        child = d.kids[0]
        if child.kind in ("Offset", "ReplaceIndex", "Round"):
            d.kind, child.kind = child.kind, d.kind
            d.alpha, child.alpha = child.alpha, d.alpha
            d.v1, child.v1 = child.v1, d.v1
            d.v2, child.v2 = child.v2, d.v2
            d.name, child.name = child.name, d.name
            changed = True
        elif child.kind == "Sum":
            d.kids = [_G("Scale", [k], -1, -1, d.alpha) for k in child.kids]
            d.kind, d.alpha = "Sum", 0.0
            changed = True
        elif child.kind == "Scale":
            d.alpha = float(np.float32(d.alpha) * np.float32(child.alpha))
            d.kids[0] = child.kids[0]
            changed = True
        elif child.kind != "node":
            raise XvjaxError(
                "unhandled Scale() combination when normalizing a descriptor; "
                "push Scale() inside other expressions"
            )
    for k in d.kids:
        changed = changed or _normalize(k)
    return changed


def _to_ast(g: _G) -> Descriptor:
    k = g.kind
    if k == "node":
        return NodeRef(g.name)
    if k == "Append":
        return Append(tuple(_to_ast(c) for c in g.kids))
    if k in ("Sum", "Failover"):
        if len(g.kids) != 2:
            raise XvjaxError(f"{k}() needs two arguments after normalisation")
        cls = Sum if k == "Sum" else Failover
        return cls(_to_ast(g.kids[0]), _to_ast(g.kids[1]))
    if k == "IfDefined":
        return IfDefined(_to_ast(g.kids[0]))
    if k == "Const":
        return Const(g.alpha, g.v1)
    return _to_forwarding(g)


def _to_forwarding(g: _G) -> Descriptor:
    k = g.kind
    if k == "node":
        return NodeRef(g.name)
    if k == "Offset":
        return Offset(_to_forwarding(g.kids[0]), g.v1, g.v2)
    if k == "Switch":
        return Switch(tuple(_to_forwarding(c) for c in g.kids))
    if k == "Round":
        return Round(_to_forwarding(g.kids[0]), g.v1)
    if k == "ReplaceIndex":
        return ReplaceIndex(_to_forwarding(g.kids[0]), g.name, g.v2)
    if k == "Scale":
        if len(g.kids) != 1 or g.kids[0].kind != "node":
            raise XvjaxError("invalid combination of Scale() with other descriptor expressions")
        if g.alpha == 1.0:  # SimpleForwardingDescriptor with scale 1 prints as the bare name
            return NodeRef(g.kids[0].name)
        return Scale(g.alpha, NodeRef(g.kids[0].name))
    if k == "Const":
        raise XvjaxError("Const() appears too deep in the descriptor expression")
    raise XvjaxError(f"{k}() cannot appear inside a forwarding descriptor (Offset, Round, ...)")


def parse_descriptor(text: str, where: str = "descriptor") -> Descriptor:
    """Parses and normalises a descriptor; `where` names the node for error messages."""
    p = _Parser(text, where)
    g = p.parse()
    if p.peek() != "end of input":
        raise p.error(f"unexpected '{p.peek()}' after the end of the descriptor")
    g = _normalize_append(g)
    while _normalize(g):
        pass
    try:
        if g.kind == "Append":
            return Append(tuple(_to_ast(c) for c in g.kids))
        return _to_ast(g)
    except XvjaxError as e:
        raise XvjaxError(f"{where}: {e} in descriptor '{text}'") from None


_PLACEHOLDER = "xvjaxSubstitutedNode0"


def substitute_node(desc: Descriptor, name: str, expr: Descriptor) -> Descriptor:
    """`desc` with node `name` replaced by the descriptor `expr`, normalised (Kaldi's
    ModelCollapser::ReplaceNodeInDescriptor: print with the expression in place of the name and
    parse again, so `Offset(Offset(x, -1), 2)` becomes `Offset(x, 1)`)."""
    marked = map_node_names(desc, lambda n: _PLACEHOLDER if n == name else n)
    return parse_descriptor(str(marked).replace(_PLACEHOLDER, str(expr)), "substituted descriptor")
