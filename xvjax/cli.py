"""`xvjax <command> [--opt=value ...] ARGS`: Kaldi-binary-style command line.

Each room of the package declares its commands in its own `commands.py` with `@command(...)`, and
`COMMANDS` below says where each one lives (imported on use);
this module only parses options the way Kaldi's `ParseOptions` does and dispatches:

- `--name=value`, and `--name` alone for a true boolean (`--binary=false` works);
- `-` and `_` are interchangeable in option names, as in Kaldi;
- `--config=FILE` reads one `--opt=value` per line (`#` comments), command line wins;
- `--help` prints the usage text with every option and its default;
- errors (`XvjaxError`, and OS errors such as a permission denied) print one line
  `ERROR (xvjax CMD): ...` and exit with status 1; Ctrl-C exits with 130, SIGTERM with 143 and
  SIGHUP with 129, after the same clean-up;
- a command's output files are kept only if it exits 0 (`fileutil.command_outputs`): on an error, a
  non-zero return, Ctrl-C or SIGTERM, the files it wrote are removed and any file it replaced is put
  back. Resumable jobs (`resumable=True`: train, demo, make-demo-corpus) keep what they finished.
  Standard output and pipes cannot be un-written (see `xvjax.fileutil`).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import logging
import os
import re
import shlex
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Sequence
from typing import Any

from xvjax import fileutil
from xvjax.errors import XvjaxError
from xvjax.kaldi.config_files import parse_bool, read_config_file

# Every command, as `name -> "module:function"`. A command module is imported only when one of its
# commands runs (or for `--help`), so starting `xvjax CMD` costs one module, not all of them.
COMMANDS: dict[str, str] = {
    # Kaldi tables and data dirs
    "copy-feats": "xvjax.kaldi.commands:copy_feats",
    "copy-matrix": "xvjax.kaldi.commands:copy_matrix",
    "copy-vector": "xvjax.kaldi.commands:copy_vector",
    "feat-to-dim": "xvjax.kaldi.commands:feat_to_dim",
    "feat-to-len": "xvjax.kaldi.commands:feat_to_len",
    "copy-int-vector": "xvjax.kaldi.commands:copy_int_vector",
    "wav-copy": "xvjax.kaldi.commands:wav_copy",
    "wav-to-duration": "xvjax.kaldi.commands:wav_to_duration",
    "extract-segments": "xvjax.kaldi.commands:extract_segments",
    "validate-data-dir": "xvjax.kaldi.commands:validate_data_dir_cmd",
    "subset-data-dir": "xvjax.kaldi.commands:subset_data_dir_cmd",
    "split-data-dir": "xvjax.kaldi.commands:split_data_dir_cmd",
    "combine-data-dir": "xvjax.kaldi.commands:combine_data_dir_cmd",
    "fix-data-dir": "xvjax.kaldi.commands:fix_data_dir_cmd",
    "kaldi-shims": "xvjax.kaldi.commands:kaldi_shims",
    # nnet3 models and egs
    "nnet3-copy": "xvjax.kaldi.nnet3.commands:nnet3_copy",
    "nnet3-init": "xvjax.kaldi.nnet3.commands:nnet3_init",
    "nnet3-info": "xvjax.kaldi.nnet3.commands:nnet3_info",
    "nnet3-copy-egs": "xvjax.kaldi.nnet3.commands:nnet3_copy_egs",
    "nnet3-merge-egs": "xvjax.kaldi.nnet3.commands:nnet3_merge_egs",
    "nnet3-shuffle-egs": "xvjax.kaldi.nnet3.commands:nnet3_shuffle_egs",
    "nnet3-subset-egs": "xvjax.kaldi.nnet3.commands:nnet3_subset_egs",
    "nnet3-xvector-get-egs": "xvjax.kaldi.nnet3.commands:nnet3_xvector_get_egs",
    # front end
    "compute-mfcc-feats": "xvjax.features.commands:compute_mfcc_feats",
    "compute-fbank-feats": "xvjax.features.commands:compute_fbank_feats",
    "compute-vad": "xvjax.features.commands:compute_vad_cmd",
    "apply-cmvn-sliding": "xvjax.features.commands:apply_cmvn_sliding",
    "compute-cmvn-stats": "xvjax.features.commands:compute_cmvn_stats",
    "apply-cmvn": "xvjax.features.commands:apply_cmvn_cmd",
    "select-voiced-frames": "xvjax.features.commands:select_voiced_frames_cmd",
    "make-features": "xvjax.features.commands:make_features",
    "augment-data-dir": "xvjax.features.commands:augment_data_dir",
    "wav-reverberate": "xvjax.features.commands:wav_reverberate",
    # models and x-vectors
    "nnet3-to-flax": "xvjax.model.commands:nnet3_to_flax_cmd",
    "flax-to-nnet3": "xvjax.model.commands:flax_to_nnet3_cmd",
    "nnet3-xvector-compute": "xvjax.model.commands:nnet3_xvector_compute_cmd",
    "nnet3-compute": "xvjax.model.commands:nnet3_compute_cmd",
    # backend
    "ivector-mean": "xvjax.backend.commands.vectors:ivector_mean",
    "ivector-subtract-global-mean": "xvjax.backend.commands.vectors:ivector_subtract_global_mean",
    "ivector-normalize-length": "xvjax.backend.commands.vectors:ivector_normalize_length",
    "transform-vec": "xvjax.backend.commands.vectors:transform_vec_cmd",
    "ivector-compute-lda": "xvjax.backend.commands.lda_plda:ivector_compute_lda",
    "ivector-compute-plda": "xvjax.backend.commands.lda_plda:ivector_compute_plda",
    "ivector-adapt-plda": "xvjax.backend.commands.lda_plda:ivector_adapt_plda",
    "ivector-copy-plda": "xvjax.backend.commands.lda_plda:ivector_copy_plda",
    "ivector-plda-scoring": "xvjax.backend.commands.scoring:ivector_plda_scoring",
    "ivector-plda-scoring-dense": "xvjax.backend.commands.scoring:ivector_plda_scoring_dense",
    "cosine-scoring": "xvjax.backend.commands.scoring:cosine_scoring",
    "ivector-compute-dot-products": "xvjax.backend.commands.scoring:ivector_compute_dot_products",
    "score-matrix": "xvjax.backend.commands.scoring:score_matrix_cmd",
    "score-norm": "xvjax.backend.commands.scoring:score_norm",
    "cluster-vectors": "xvjax.backend.commands.clustering:cluster_vectors",
    "calibrate": "xvjax.backend.commands.metrics:calibrate_cmd",
    "compute-eer": "xvjax.backend.commands.metrics:compute_eer_cmd",
    "compute-min-dcf": "xvjax.backend.commands.metrics:compute_min_dcf_cmd",
    "compute-act-dcf": "xvjax.backend.commands.metrics:compute_act_dcf_cmd",
    "det-plot": "xvjax.backend.commands.metrics:det_plot_cmd",
    # training, the demo corpus and the recipe
    "train": "xvjax.train.commands:train",
    "make-tfds-dataset": "xvjax.train.commands:make_tfds_dataset",
    "make-demo-corpus": "xvjax.synthetic.commands:make_demo_corpus",
    "demo": "xvjax.recipe.commands:demo",
}

log = logging.getLogger("xvjax")


@dataclasses.dataclass(frozen=True)
class Opt:
    """One command option. Its type is the type of `default` (bool, int, float or str)."""

    name: str
    default: Any
    help: str
    type: type | None = None  # set when default is None
    env: str = ""  # an environment variable that sets the default (the command line wins)

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
    # A resumable job keeps the files it finished when it fails (a rerun resumes from them);
    # every other command's outputs are kept only if it exits 0.
    resumable: bool = False
    # Also accept `--name value` (argparse style, as the Kaldi Python scripts it replaces do).
    spaced_values: bool = False


# Options every (non-raw) command accepts, as Kaldi's ParseOptions adds them.
COMMON_OPTS = (
    Opt("config", "", "Configuration file to read (one --opt=value a line)"),
    Opt("verbose", 0, "Verbose level (higher is more logging)"),
    Opt("print-args", True, "Print the command line arguments (to stderr)"),
)

# How a heavy command joins the other processes of a multi-host job (`xvjax.distributed`).
CLUSTER_OPTS = (
    Opt("coordinator", "", "jax.distributed coordinator HOST:PORT of a multi-process run; 'auto': "
        "let JAX find the cluster (Slurm, Cloud TPU, GKE, Open MPI); 'none': run alone; empty: "
        "join a multi-task Slurm step or Open MPI job if this is one", env="XVJAX_COORDINATOR"),
    Opt("num-processes", 0, "Number of processes (one per host) with --coordinator=HOST:PORT "
        "(0: from the cluster)", env="XVJAX_NUM_PROCESSES"),
    Opt("process-id", -1, "This process's index 0..N-1 with --coordinator=HOST:PORT (-1: from "
        "the cluster)", env="XVJAX_PROCESS_ID"),
)  # fmt: skip


def command(
    name: str,
    summary: str,
    usage: str,
    opts: Sequence[Opt] = (),
    nargs: tuple[int, int | None] = (0, None),
    raw: bool = False,
    resumable: bool = False,
    spaced_values: bool = False,
):
    """Declares `func(opts, *args)` as `xvjax NAME` (listed in `COMMANDS`). `nargs` = (min, max or
    None). The declaration is kept on the function (`func.command`); nothing is registered."""

    def wrap(func):
        func.command = Command(
            name, summary, textwrap.dedent(usage).strip(), opts, func, nargs, raw, resumable,
            spaced_values,
        )  # fmt: skip
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


def parse_args(cmd: Command, argv: Sequence[str]) -> tuple[Options, list[str]]:
    """Kaldi-style parse: options may appear anywhere before `--`; the rest are positional."""
    known = {_canon(o.name): o for o in cmd.opts}
    for o in COMMON_OPTS:
        known.setdefault(o.name, o)
    values: dict[str, Any] = {o.name.replace("-", "_"): o.default for o in known.values()}
    for o in known.values():
        if o.env and os.environ.get(o.env):
            values[o.name.replace("-", "_")] = _convert(o, os.environ[o.env])
    positional: list[str] = []
    from_cli: list[str] = []
    only_args = False
    argv = list(argv)
    while argv:
        arg = argv.pop(0)
        if only_args or not arg.startswith("--") or arg == "--":
            if arg == "--" and not only_args:
                only_args = True
                continue
            positional.append(arg)
            continue
        opt = known.get(_canon(arg[2:]))
        if cmd.spaced_values and opt is not None and opt.kind is not bool and argv:
            arg = f"{arg}={argv.pop(0)}"  # `--p-target 0.01`
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
        shown = kind if default is None else f"{kind}, default = {default}"  # None: see the help
        if o.env:
            shown += f"; env {o.env}"
        lines.append(f"  --{_canon(o.name):<28} : {o.help} ({shown})")
    return "\n".join(lines)


def get_command(name: str) -> Command | None:
    """The declaration of `xvjax NAME` (imports its module), or None for an unknown name."""
    target = COMMANDS.get(name)
    if target is None:
        return None
    module, _, func = target.partition(":")
    cmd = getattr(importlib.import_module(module), func).command
    if cmd.name != name:
        raise RuntimeError(f"COMMANDS['{name}'] points at the declaration of '{cmd.name}'")
    return cmd


def load_commands() -> dict[str, Command]:
    """Every command's declaration (imports every command module; for `xvjax --help`)."""
    return {name: get_command(name) for name in COMMANDS}


def declared_summaries() -> dict[str, str]:
    """{command: summary} read from the `@command("name", "summary", ...)` declarations in the
    command modules' source, without importing them (what makes `xvjax --help` start in tens of
    ms: importing every command module costs numpy and ~40 modules). A declaration whose name
    or summary is not a string literal is imported instead."""
    out: dict[str, str] = {}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for module in sorted({target.partition(":")[0] for target in COMMANDS.values()}):
        path = os.path.join(root, *module.split(".")) + ".py"  # find_spec would import parents
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            source = f.read()
        for call in _command_calls(source, path):
            if len(call.args) >= 2 and all(
                isinstance(a, ast.Constant) and isinstance(a.value, str) for a in call.args[:2]
            ):
                out[call.args[0].value] = call.args[1].value
    for name in COMMANDS:
        if name not in out:
            out[name] = get_command(name).summary
    return {name: out[name] for name in COMMANDS}


_DECORATOR = re.compile(r"^@command\(", re.MULTILINE)
_NEXT_DEF = re.compile(r"^(?:async )?def ", re.MULTILINE)


def _command_calls(source: str, path: str) -> list[ast.Call]:
    """The `command(...)` calls decorating a module's functions. Each decorator's text (up to its
    function's `def`) is parsed alone, which is several times faster than parsing the module; a
    module where that does not parse (another decorator between them, ...) is parsed whole."""
    calls = []
    for m in _DECORATOR.finditer(source):
        end = _NEXT_DEF.search(source, m.end())
        try:
            tree = ast.parse(source[m.start() + 1 : end.start() if end else None], mode="eval")
        except SyntaxError:
            break
        if not isinstance(tree.body, ast.Call):
            break
        calls.append(tree.body)
    else:
        return calls
    return [
        dec
        for node in ast.walk(ast.parse(source, path))
        if isinstance(node, ast.FunctionDef)
        for dec in node.decorator_list
        if isinstance(dec, ast.Call) and getattr(dec.func, "id", None) == "command"
    ]


def top_help() -> str:
    summaries = declared_summaries()
    width = max((len(n) for n in summaries), default=10) + 2
    body = "\n".join(f"  {n:<{width}}{summaries[n]}" for n in sorted(summaries))
    return (
        "xvjax: Kaldi-compatible x-vector speaker recognition in JAX.\n"
        "Usage: xvjax <command> [--opt=value ...] ARGS   (xvjax <command> --help for its options)\n\n"
        f"Commands:\n{body}"
    )


_process_tag = ""  # ":2/4" in a multi-process run (process 2 of 4), in every log line's prefix


class _ProcessTag(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.xvjax_process = _process_tag
        return True


def setup_logging(name: str, verbose: int = 0) -> None:
    """Kaldi-style log lines on stderr (`LOG (xvjax NAME:2/4) ...` on process 2 of 4). `--verbose`
    applies to xvjax's own logger only: the libraries' debug output (JAX, Orbax, ...) is not
    Kaldi's verbose output, and JAX's logger has a handler of its own, so letting it through
    would print each of its lines twice."""
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(levelname)s (xvjax {name}%(xvjax_process)s) %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_ProcessTag())
    logging.getLogger("xvjax").setLevel(logging.DEBUG if verbose > 0 else logging.INFO)
    for noisy in ("absl", "jax", "jaxlib", "orbax", "flax", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def join_cluster_of(opts) -> tuple[int, int]:
    """Joins the processes of a multi-host run as `opts` (`CLUSTER_OPTS`) say, through
    `xvjax.distributed.join_cluster`, and tags this process's log lines with its number; returns
    (process index, process count)."""
    global _process_tag
    from xvjax.distributed import join_cluster

    index, count = join_cluster(opts.coordinator, opts.num_processes, opts.process_id)
    _process_tag = f":{index + 1}/{count}" if count > 1 else ""
    return index, count


class Terminated(BaseException):
    """SIGTERM or SIGHUP (a job scheduler cancelling, a closed terminal), raised in the main
    thread like KeyboardInterrupt so that writers abort and the command's outputs are undone."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _termination_as_exception():
    """SIGTERM/SIGHUP raise `Terminated` in the block (a second one is ignored while it cleans
    up); a signal the caller ignores (`nohup`) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum, frame):
        signal.signal(signum, signal.SIG_IGN)
        raise Terminated(signum)

    old = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:
            old[sig] = signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _one_line(e: OSError) -> str:
    """An OS error as `what: 'file'` (Python's own text, without the `[Errno N]`)."""
    text = e.strerror or str(e)
    if e.filename is not None:
        text += f": '{e.filename}'"
    return text


def run(argv: Sequence[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(top_help())
        return 0
    name, rest = argv[0], list(argv[1:])
    cmd = get_command(name)
    if cmd is None:
        print(
            f"ERROR (xvjax): unknown command '{name}'; 'xvjax --help' lists them", file=sys.stderr
        )
        return 1
    if "--help" in rest or "-h" in rest:
        print(usage_text(cmd))
        return 0
    setup_logging(name)
    outputs = contextlib.nullcontext() if cmd.resumable else fileutil.command_outputs()
    try:
        with _termination_as_exception(), outputs as written:
            if cmd.raw:
                result = cmd.func(rest)
            else:
                opts, args = parse_args(cmd, rest)
                setup_logging(name, opts.verbose)
                if opts.print_args:  # as Kaldi's ParseOptions: the command line first, on stderr
                    print(" ".join(shlex.quote(a) for a in ["xvjax", name, *rest]), file=sys.stderr)
                result = cmd.func(opts, *args)
            result = int(result or 0)
            if result != 0 and written is not None:
                written.rollback()  # nothing is written by a command that fails
    except XvjaxError as e:
        print(f"ERROR (xvjax {name}{_process_tag}): {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ERROR (xvjax {name}{_process_tag}): interrupted", file=sys.stderr)
        return 130
    except Terminated as e:
        print(
            f"ERROR (xvjax {name}{_process_tag}): terminated by signal {e.signum}", file=sys.stderr
        )
        return 128 + e.signum
    except BrokenPipeError:
        return 1
    except OSError as e:  # permission denied, no space left, ...: one line, no traceback
        print(f"ERROR (xvjax {name}{_process_tag}): {_one_line(e)}", file=sys.stderr)
        return 1
    if result != 0 and not cmd.resumable:  # e.g. Kaldi's "nothing succeeded" status
        print(
            f"ERROR (xvjax {name}{_process_tag}): failed (exit status {result}; see the warnings above); "
            "no output file was kept",
            file=sys.stderr,
        )
    return result


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
