"""`xvjax <command> [--opt=value ...] ARGS`: Kaldi-binary-style command line.

Each room of the package declares its commands in its own `commands.py` with `@command(...)`;
this module only parses options the way Kaldi's `ParseOptions` does and dispatches:

- `--name=value`, and `--name` alone for a true boolean (`--binary=false` works);
- `-` and `_` are interchangeable in option names, as in Kaldi;
- `--config=FILE` reads one `--opt=value` per line (`#` comments), command line wins;
- `--help` prints the usage text with every option and its default;
- errors (`XvjaxError`) print one line `ERROR (xvjax CMD): ...` and exit with status 1.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import shlex
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from xvjax.errors import XvjaxError

# Rooms that declare commands. Import is cheap: heavy modules are imported inside commands.
COMMAND_MODULES = (
    "xvjax.kaldi.commands",
    "xvjax.kaldi.nnet3_commands",
    "xvjax.features.commands",
    "xvjax.model.commands",
    "xvjax.backend.commands",
    "xvjax.train.commands",
    "xvjax.recipe.commands",
    "xvjax.recipe.demo",
)

log = logging.getLogger("xvjax")


@dataclasses.dataclass(frozen=True)
class Opt:
    """One command option. Its type is the type of `default` (bool, int, float or str)."""

    name: str
    default: Any
    help: str
    type: type | None = None  # set when default is None

    @property
    def kind(self) -> type:
        return self.type or type(self.default)


@dataclasses.dataclass
class Command:
    name: str
    summary: str
    usage: str
    opts: Sequence[Opt]
    func: Callable[..., Any]
    nargs: tuple[int, int | None]
    # Raw commands get argv untouched (e.g. `train` with ml_collections `--config.x=y` overrides).
    raw: bool = False


REGISTRY: dict[str, Command] = {}

# Options every (non-raw) command accepts, as Kaldi's ParseOptions adds them.
COMMON_OPTS = (
    Opt("config", "", "Configuration file to read (one --opt=value a line)"),
    Opt("verbose", 0, "Verbose level (higher is more logging)"),
    Opt("print-args", True, "Print the command line arguments (to stderr)"),
)


def command(
    name: str,
    summary: str,
    usage: str,
    opts: Sequence[Opt] = (),
    nargs: tuple[int, int | None] = (0, None),
    raw: bool = False,
):
    """Registers `func(opts, *args)` as `xvjax NAME`. `nargs` = (min, max or None)."""

    def wrap(func):
        REGISTRY[name] = Command(
            name, summary, textwrap.dedent(usage).strip(), opts, func, nargs, raw
        )
        return func

    return wrap


class Options:
    """Parsed option values, as attributes with underscores (`opts.num_utts`)."""

    def __init__(self, values: dict[str, Any]):
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"Options({self.__dict__})"


def _canon(name: str) -> str:
    return name.replace("_", "-")


def parse_bool(text: str, option: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "t", "1", "yes", ""):
        return True
    if low in ("false", "f", "0", "no"):
        return False
    raise XvjaxError(f"option --{option}: invalid boolean value '{text}' (use true or false)")


def _convert(opt: Opt, text: str | None) -> Any:
    kind = opt.kind
    if kind is bool:
        return parse_bool(text or "", opt.name)
    if text is None:
        raise XvjaxError(f"option --{opt.name} needs a value (--{opt.name}=VALUE)")
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        raise XvjaxError(f"option --{opt.name}: invalid {kind.__name__} value '{text}'") from None
    return text


def read_config_file(path: str) -> list[str]:
    """Lines `--opt=value` of a Kaldi-style config file; blank lines and `#` comments skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise XvjaxError(f"cannot read config file {path}: {e.strerror}") from None
    out = []
    for num, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not line.startswith("--"):
            raise XvjaxError(f"{path}:{num}: expected '--option=value', got '{line}'")
        out.append(line)
    return out


def parse_args(cmd: Command, argv: Sequence[str]) -> tuple[Options, list[str]]:
    """Kaldi-style parse: options may appear anywhere before `--`; the rest are positional."""
    known = {_canon(o.name): o for o in cmd.opts}
    for o in COMMON_OPTS:
        known.setdefault(o.name, o)
    values: dict[str, Any] = {o.name.replace("-", "_"): o.default for o in known.values()}
    positional: list[str] = []
    from_cli: list[str] = []
    only_args = False
    for arg in argv:
        if only_args or not arg.startswith("--") or arg == "--":
            if arg == "--" and not only_args:
                only_args = True
                continue
            positional.append(arg)
        else:
            from_cli.append(arg)

    def apply(items: list[str], source: str) -> None:
        for item in items:
            body = item[2:]
            name, eq, text = body.partition("=")
            opt = known.get(_canon(name))
            if opt is None:
                raise XvjaxError(f"invalid option {item} ({source}); see 'xvjax {cmd.name} --help'")
            values[opt.name.replace("-", "_")] = _convert(opt, text if eq else None)

    cli_config = [a for a in from_cli if _canon(a[2:].partition("=")[0]) == "config"]
    for item in cli_config:
        path = item.partition("=")[2]
        if path:
            apply(read_config_file(path), f"in {path}")
    apply(from_cli, "on the command line")
    lo, hi = cmd.nargs
    if len(positional) < lo or (hi is not None and len(positional) > hi):
        want = f"{lo}" if lo == hi else f"{lo} to {hi if hi is not None else 'any'}"
        raise XvjaxError(
            f"expected {want} arguments, got {len(positional)}; see 'xvjax {cmd.name} --help'"
        )
    return Options(values), positional


def usage_text(cmd: Command) -> str:
    if cmd.raw:  # raw commands parse their own options and list them in their usage text
        return f"{cmd.summary}\n{cmd.usage}"
    lines = [cmd.summary, cmd.usage, "", "Options:"]
    opts = [*cmd.opts, *COMMON_OPTS, Opt("help", False, "Print this usage message")]
    for o in opts:
        default = o.default
        if isinstance(default, bool):
            default = str(default).lower()
        kind = {bool: "bool", int: "int", float: "float", str: "string"}.get(o.kind, "string")
        lines.append(f"  --{_canon(o.name):<28} : {o.help} ({kind}, default = {default})")
    return "\n".join(lines)


def load_commands() -> dict[str, Command]:
    for mod in COMMAND_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
    return REGISTRY


def top_help() -> str:
    cmds = load_commands()
    width = max((len(n) for n in cmds), default=10) + 2
    body = "\n".join(f"  {n:<{width}}{cmds[n].summary}" for n in sorted(cmds))
    return (
        "xvjax: Kaldi-compatible x-vector speaker recognition in JAX.\n"
        "Usage: xvjax <command> [--opt=value ...] ARGS   (xvjax <command> --help for its options)\n\n"
        f"Commands:\n{body}"
    )


def setup_logging(name: str, verbose: int = 0) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose > 0 else logging.INFO,
        format=f"%(levelname)s (xvjax {name}) %(message)s",
        stream=sys.stderr,
        force=True,
    )
    # Third-party chatter (absl/orbax/jax) stays at warning level unless verbose.
    for noisy in ("absl", "jax", "orbax", "flax", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)


def run(argv: Sequence[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(top_help())
        return 0
    name, rest = argv[0], list(argv[1:])
    cmds = load_commands()
    cmd = cmds.get(name)
    if cmd is None:
        print(
            f"ERROR (xvjax): unknown command '{name}'; 'xvjax --help' lists them", file=sys.stderr
        )
        return 1
    if "--help" in rest or "-h" in rest:
        print(usage_text(cmd))
        return 0
    setup_logging(name)
    try:
        if cmd.raw:
            result = cmd.func(rest)
        else:
            opts, args = parse_args(cmd, rest)
            setup_logging(name, opts.verbose)
            if opts.print_args:  # as Kaldi's ParseOptions: the command line first, on stderr
                print(" ".join(shlex.quote(a) for a in ["xvjax", name, *rest]), file=sys.stderr)
            result = cmd.func(opts, *args)
    except XvjaxError as e:
        print(f"ERROR (xvjax {name}): {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ERROR (xvjax {name}): interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    return int(result or 0)


def main() -> None:
    try:
        code = run(sys.argv[1:])
        sys.stdout.flush()
    except BrokenPipeError:  # `xvjax cmd --help | head`: the reader went away, not our error
        code = 0
        # Point stdout at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(code)


if __name__ == "__main__":
    # `python -m xvjax.cli`: commands register on the imported module, not on __main__.
    from xvjax.cli import main as _main

    _main()
