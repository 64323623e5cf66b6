"""The nnet3 network (`src/nnet3/nnet-nnet.cc`): config section + components, read/write/edit.

File layout (binary files start with `\\0B`): `<Nnet3> ` newline, one config line per node
(`input-node`, `component-node`, `output-node`, `dim-range-node`, dims omitted), an empty line,
`<NumComponents> N`, then N x (`<ComponentName> name` + component), `</Nnet3> `. In text mode a
newline follows the component count and every component.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np

from xvjax.errors import XvjaxError
from xvjax.kaldi import streams
from xvjax.kaldi.nnet3 import descriptors as D
from xvjax.kaldi.nnet3.components import (
    Component,
    component_info,
    init_component,
    read_component,
    write_component,
)
from xvjax.kaldi.nnet3.config_line import ConfigLine
from xvjax.kaldi.nnet3.context import simple_context
from xvjax.kaldi.primitives import KaldiInput, KaldiOutput

log = logging.getLogger("xvjax")

OBJECTIVES = ("linear", "quadratic", "xent-per-dim")


@dataclasses.dataclass
class Node:
    """A network node as in the config section.

    kind: "input" | "component" | "output" | "dim-range".
    input: the parsed descriptor (component and output nodes; for a dim-range node a NodeRef to
      its input-node); None for input nodes.
    component: the component name (component nodes).
    dim: input-node dim, or dim-range dim. dim_offset: dim-range offset.
    attrs: {"objective": "linear"|"quadratic"|"xent-per-dim"} for output nodes.
    """

    kind: str
    name: str
    input: D.Descriptor | None = None
    component: str | None = None
    dim: int | None = None
    dim_offset: int | None = None
    attrs: dict[str, str] = dataclasses.field(default_factory=dict)

    def config_line(self, dims: tuple[int, int] | None = None) -> str:
        """Kaldi's GetAsConfigLine (dims = (input-dim, output-dim) when include_dim)."""
        if self.kind == "input":
            return f"input-node name={self.name} dim={self.dim}"
        if self.kind == "output":
            line = f"output-node name={self.name} input={self.input}"
            if dims is not None:
                line += f" dim={dims[1]}"
            return line + f" objective={self.attrs.get('objective', 'linear')}"
        if self.kind == "component":
            line = f"component-node name={self.name} component={self.component} input={self.input}"
            if dims is not None:
                line += f" input-dim={dims[0]} output-dim={dims[1]}"
            return line
        if self.kind == "dim-range":
            return (
                f"dim-range-node name={self.name} input-node={self.input} "
                f"dim-offset={self.dim_offset} dim={self.dim}"
            )
        raise XvjaxError(f"unknown node kind {self.kind}")


class Nnet:
    """A Kaldi nnet3 network: `nodes` (config-section order) and `components` (file order)."""

    def __init__(
        self, nodes: list[Node] | None = None, components: dict[str, Component] | None = None
    ):
        self.nodes: list[Node] = list(nodes or [])
        self.components: dict[str, Component] = dict(components or {})

    # ------------------------------------------------------------------ access
    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise XvjaxError(f"nnet3 model has no node named '{name}'")

    def has_node(self, name: str) -> bool:
        return any(n.name == name for n in self.nodes)

    def component(self, name: str) -> Component:
        if name not in self.components:
            raise XvjaxError(f"nnet3 model has no component named '{name}'")
        return self.components[name]

    def input_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.kind == "input"]

    def output_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.kind == "output"]

    def component_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.kind == "component"]

    def input_dim(self, name: str = "input") -> int:
        node = self.node(name)
        if node.kind != "input":
            raise XvjaxError(f"node '{name}' is not an input node")
        return int(node.dim)

    def output_dim(self, name: str = "output") -> int:
        node = self.node(name)
        if node.kind != "output":
            raise XvjaxError(f"node '{name}' is not an output node")
        return self.descriptor_dim(node.input, name)

    def node_dim(self, name: str) -> int:
        """Output dimension of an input, component or dim-range node."""
        node = self.node(name)
        if node.kind in ("input", "dim-range"):
            return int(node.dim)
        if node.kind == "component":
            return self.component(node.component).output_dim
        return self.descriptor_dim(node.input, name)

    def descriptor_dim(self, desc: D.Descriptor, where: str = "") -> int:
        if isinstance(desc, D.NodeRef):
            return self.node_dim(desc.name)
        if isinstance(desc, D.Const):
            return desc.dim
        if isinstance(desc, (D.Append,)):
            return sum(self.descriptor_dim(p, where) for p in desc.parts)
        if isinstance(desc, (D.Sum, D.Failover)):
            a, b = self.descriptor_dim(desc.a, where), self.descriptor_dim(desc.b, where)
            if a != b:
                raise XvjaxError(f"node '{where}': {type(desc).__name__}() of dims {a} and {b}")
            return a
        if isinstance(desc, D.Switch):
            dims = {self.descriptor_dim(p, where) for p in desc.parts}
            if len(dims) != 1:
                raise XvjaxError(f"node '{where}': Switch() of different dims {sorted(dims)}")
            return dims.pop()
        return self.descriptor_dim(desc.src, where)

    def modulus(self) -> int:
        ans = 1
        for n in self.nodes:
            if n.kind in ("component", "output"):
                ans = math.lcm(ans, D.modulus(n.input))
        return ans

    def context(self, input_name: str = "input", output_name: str = "output") -> tuple[int, int]:
        """(left, right) frame context as `nnet3-info` reports it (ComputeSimpleNnetContext)."""
        return simple_context(self, input_name, output_name)

    def num_parameters(self) -> int:
        return sum(c.num_parameters() for c in self.components.values())

    def copy(self) -> Nnet:
        return Nnet([dataclasses.replace(n, attrs=dict(n.attrs)) for n in self.nodes],
                    {k: c.copy() for k, c in self.components.items()})  # fmt: skip

    def __eq__(self, other) -> bool:
        if not isinstance(other, Nnet):
            return NotImplemented
        return (
            self.nodes == other.nodes
            and list(self.components) == list(other.components)
            and all(self.components[k] == other.components[k] for k in self.components)
        )

    def config_lines(self, include_dim: bool = False) -> list[str]:
        lines = []
        for n in self.nodes:
            dims = None
            if include_dim and n.kind == "component":
                dims = (self.descriptor_dim(n.input, n.name), self.node_dim(n.name))
            elif include_dim and n.kind == "output":
                dims = (0, self.descriptor_dim(n.input, n.name))
            lines.append(n.config_line(dims))
        return lines

    def is_simple(self) -> bool:
        """Kaldi's IsSimpleNnet: an output node `output` and an input node `input` (besides
        which only an input `ivector` is allowed)."""
        inputs = {n.name for n in self.input_nodes()}
        outputs = {n.name for n in self.output_nodes()}
        return "output" in outputs and "input" in inputs and inputs <= {"input", "ivector"}

    def info(self) -> str:
        """`nnet3-info`'s text (Nnet::Info): context (simple networks), parameters, modulus, the
        config lines with dims, and one `component name=... type=...` line per component."""
        lines = []
        if self.is_simple():
            left, right = self.context()
            lines += [f"left-context: {left}", f"right-context: {right}"]
        lines += [f"num-parameters: {self.num_parameters()}", f"modulus: {self.modulus()}"]
        lines += self.config_lines(include_dim=True)
        lines += [
            f"component name={k} type={component_info(c)}" for k, c in self.components.items()
        ]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ checks
    def check(self, warn_for_orphans: bool = False) -> None:
        """Nnet::Check: names unique, references valid, dimensions consistent."""
        names: set[str] = set()
        for n in self.nodes:
            if n.name in names:
                raise XvjaxError(f"nnet3 model has two nodes named '{n.name}'")
            names.add(n.name)
        kinds = {n.name: n.kind for n in self.nodes}
        if not any(k == "input" for k in kinds.values()):
            raise XvjaxError("nnet3 model has no input-node")
        if not any(k == "output" for k in kinds.values()):
            raise XvjaxError("nnet3 model has no output-node")
        for n in self.nodes:
            if n.kind == "input":
                if not n.dim or n.dim <= 0:
                    raise XvjaxError(f"input-node '{n.name}' has invalid dim {n.dim}")
                continue
            for ref in D.node_names(n.input):
                kind = kinds.get(ref)
                if kind is None:
                    raise XvjaxError(
                        f"node '{n.name}' reads unknown node '{ref}' (input={n.input})"
                    )
                if kind == "output" or (n.kind == "dim-range" and kind == "dim-range"):
                    raise XvjaxError(f"node '{n.name}' cannot read {kind} node '{ref}'")
            if n.kind == "component":
                comp = self.components.get(n.component)
                if comp is None:
                    raise XvjaxError(
                        f"component-node '{n.name}' uses unknown component '{n.component}'"
                    )
                src = self.descriptor_dim(n.input, n.name)
                if src != comp.input_dim:
                    raise XvjaxError(
                        f"dimension mismatch for component-node '{n.name}': input is {src}-dim, "
                        f"component '{n.component}' takes {comp.input_dim}"
                    )
            elif n.kind == "dim-range":
                in_dim = self.node_dim(n.input.name)
                if not (n.dim > 0 and n.dim_offset >= 0 and n.dim + n.dim_offset <= in_dim):
                    raise XvjaxError(
                        f"dim-range-node '{n.name}': invalid dim/offset for {in_dim}-dim input"
                    )
            elif n.kind == "output":
                self.descriptor_dim(n.input, n.name)
        if warn_for_orphans:
            used = {n.component for n in self.nodes if n.kind == "component"}
            for c in self.components:
                if c not in used:
                    log.warning("Component %s is never used by any node.", c)
            for name in self.orphan_nodes():
                log.warning("Node %s is never used to compute any output.", name)

    def orphan_nodes(self) -> list[str]:
        """Non-output nodes that no output depends on."""
        by_name = {n.name: n for n in self.nodes}
        needed: set[str] = set()
        stack = [n.name for n in self.nodes if n.kind == "output"]
        while stack:
            name = stack.pop()
            if name in needed:
                continue
            needed.add(name)
            node = by_name[name]
            if node.input is not None:
                stack.extend(D.node_names(node.input))
        return [n.name for n in self.nodes if n.name not in needed]

    # ------------------------------------------------------------------ io
    @classmethod
    def read(cls, rxfilename: str) -> Nnet:
        """Reads a raw nnet3 model: a path, `-` or `command |`; binary or text (auto-detected)."""
        data = streams.read_all(rxfilename)
        return cls.from_bytes(data, rxfilename)

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<nnet3>") -> Nnet:
        binary = data[:2] == b"\0B"
        inp = KaldiInput(data, binary, source, 2 if binary else 0)
        first = inp.peek_token()
        if first.startswith("<TransitionModel>") or first == "<Topology>":
            raise XvjaxError(
                f"{source}: this is a .mdl (TransitionModel + AmNnetSimple); "
                "extract the raw network with nnet3-am-copy --raw=true"
            )
        if first != "<Nnet3>":
            raise XvjaxError(
                f"{source}: not an nnet3 model (expected <Nnet3>, found '{first[:40]}')"
            )
        inp.expect("<Nnet3>")
        rest = inp.line()
        if rest.strip():
            raise inp.error(f"expected newline after <Nnet3>, got '{rest}'")
        lines = []
        while True:
            line = inp.line()
            if line.strip() == "":
                break
            lines.append(line)
        inp.expect("<NumComponents>")
        num = inp.int32("number of components")
        if not 0 <= num < 100000:
            raise inp.error(f"bad number of components {num}")
        components: dict[str, Component] = {}
        for _ in range(num):
            inp.expect("<ComponentName>")
            name = inp.token("component name")
            type_token = inp.token(f"type of component '{name}'")
            if name in components:
                raise inp.error(f"duplicate component name '{name}'")
            components[name] = read_component(inp, type_token, name)
        inp.expect("</Nnet3>")
        nnet = cls([], components)
        nnet._apply_config_lines(lines, source, warn_orphans=False)
        return nnet

    def to_bytes(self, binary: bool = True, kaldi_roundtrip: bool = True) -> bytes:
        """Nnet::Write (with the `\\0B` header in binary mode).

        kaldi_roundtrip=True (default) writes exactly what Kaldi's `nnet3-copy` writes for this
        model (BatchNorm / nonlinearity statistics pass through Kaldi's double-sum storage);
        False writes the values as stored, so reading any file and writing it back in the same
        mode reproduces the file byte for byte.
        """
        out = KaldiOutput(binary)
        if binary:
            out.raw(b"\0B")
        out.token("<Nnet3>")
        out.raw("\n")
        for line in self.config_lines():
            out.raw(line + "\n")
        out.raw("\n")
        out.token("<NumComponents>")
        out.int32(len(self.components))
        if not binary:
            out.raw("\n")
        for name, comp in self.components.items():
            out.token("<ComponentName>")
            out.token(name)
            write_component(out, comp, kaldi_roundtrip)
            if not binary:
                out.raw("\n")
        out.token("</Nnet3>")
        return out.getvalue()

    def write(self, wxfilename: str, binary: bool = True, kaldi_roundtrip: bool = True) -> None:
        """Writes atomically to a path (or `-`, `| command`); see `to_bytes`."""
        streams.write_all(wxfilename, self.to_bytes(binary, kaldi_roundtrip))

    # ------------------------------------------------------------------ config editing
    def apply_config(
        self,
        config_text: str,
        rng: np.random.Generator | int | None = None,
        source: str = "nnet-config",
        warn_orphans: bool = True,
    ) -> None:
        """`nnet3-copy --nnet-config` / `Nnet::ReadConfig`: add or replace components and nodes.

        A redefined node is removed from its old place and appended in the order of the new
        config (Kaldi's RemoveRedundantConfigLines keeps the later line); a redefined component
        keeps its position. Nothing is pruned: nodes and components that become unused (e.g.
        after `output-node name=output input=tdnn6.affine`) stay, as with Kaldi's nnet3-copy.
        Random initialisation (param-stddev/bias-stddev > 0) uses `rng` (numpy), not Kaldi's RNG,
        so it cannot match Kaldi's numbers; zero stddevs give Kaldi's exact result.
        Like Kaldi, logs a warning for each node no output uses (warn_orphans=False: quiet).
        """
        if not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
        lines = []
        for raw in config_text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if line:
                lines.append(line)
        self._apply_config_lines(lines, source, warn_orphans=warn_orphans, rng=rng)

    def _apply_config_lines(self, lines: list[str], source: str, warn_orphans: bool,
                            rng: np.random.Generator | None = None) -> None:  # fmt: skip
        parsed = [ConfigLine(line, f"{source}") for line in lines]
        new_nodes: list[tuple[ConfigLine, str]] = []
        seen_components: set[str] = set()
        seen_nodes: set[str] = set()
        for cfg in parsed:
            first = cfg.first_token
            name = cfg.values.get("name")
            if name is None:
                raise XvjaxError(f"{source}: config line has no name=: '{cfg.whole_line}'")
            if not D.is_valid_name(name):
                raise XvjaxError(f"{source}: invalid name '{name}' in '{cfg.whole_line}'")
            if first == "component":
                if name in seen_components:
                    raise XvjaxError(f"{source}: component {name} appears twice")
                seen_components.add(name)
            elif first in ("input-node", "component-node", "output-node", "dim-range-node"):
                if name in seen_nodes:
                    raise XvjaxError(f"{source}: node {name} appears twice")
                seen_nodes.add(name)
                new_nodes.append((cfg, first))
            else:
                raise XvjaxError(
                    f"{source}: invalid config line ('{first}' not expected): {cfg.whole_line}"
                )
        # pass 0: components (replace in place or append)
        for cfg in parsed:
            if cfg.first_token != "component":
                continue
            cfg.used.add("name")
            name = cfg.values["name"]
            type_name = cfg.require(cfg.str("type"), "type")
            cfg.where = f"{source}: component {name}"
            comp = init_component(name, type_name, cfg, rng or np.random.default_rng())
            self.components[name] = comp
        # node order: surviving old nodes, then the new lines in order
        kept = [n for n in self.nodes if n.name not in seen_nodes]
        readable = {n.name for n in kept if n.kind != "output"} | {
            cfg.values["name"] for cfg, first in new_nodes if first != "output-node"
        }
        nodes = list(kept)
        for cfg, first in new_nodes:
            nodes.append(self._node_from_config(cfg, first, readable, source))
        self.nodes = nodes
        self.check(warn_for_orphans=warn_orphans)

    def _node_from_config(
        self, cfg: ConfigLine, first: str, readable: set[str], source: str
    ) -> Node:
        cfg.used.add("name")
        name = cfg.values["name"]
        where = f"{source}: node {name}"
        if first == "input-node":
            dim = cfg.require(cfg.int("dim"), "dim")
            cfg.check_unused()
            if dim <= 0:
                raise XvjaxError(f"{where}: invalid dim {dim}")
            return Node("input", name, dim=dim)
        if first == "dim-range-node":
            src = cfg.require(cfg.str("input-node"), "input-node")
            dim = cfg.require(cfg.int("dim"), "dim")
            offset = cfg.require(cfg.int("dim-offset"), "dim-offset")
            cfg.check_unused()
            if src not in readable:
                raise XvjaxError(f"{where}: invalid input-node {src}")
            return Node("dim-range", name, input=D.NodeRef(src), dim=dim, dim_offset=offset)
        text = cfg.require(cfg.str("input"), "input")
        desc = D.parse_descriptor(text, where)
        for ref in D.node_names(desc):
            if ref not in readable:
                raise XvjaxError(f"{where}: descriptor '{text}' refers to unknown node '{ref}'")
        if first == "component-node":
            comp = cfg.require(cfg.str("component"), "component")
            cfg.check_unused()
            if comp not in self.components:
                raise XvjaxError(f"{where}: no component named '{comp}'")
            return Node("component", name, input=desc, component=comp)
        objective = cfg.str("objective", "linear")
        if objective not in OBJECTIVES:
            raise XvjaxError(f"{where}: invalid objective type '{objective}'")
        cfg.check_unused()
        return Node("output", name, input=desc, attrs={"objective": objective})


def read_nnet(rxfilename: str) -> Nnet:
    return Nnet.read(rxfilename)
