import subprocess
import sys

import pytest

from xvjax import cli
from xvjax.errors import XvjaxError

CMD = cli.Command(
    name="t",
    summary="test",
    usage="xvjax t [options] <a> <b>",
    opts=[
        cli.Opt("binary", True, "binary output"),
        cli.Opt("num-utts", "", "num utts table"),
        cli.Opt("dim", 10, "dim"),
        cli.Opt("scale", 1.5, "scale"),
    ],
    func=lambda opts, *a: None,
    nargs=(2, 2),
)


def test_kaldi_option_spellings():
    opts, args = cli.parse_args(
        CMD, ["--binary=false", "a", "--num_utts=ark:n.ark", "b", "--dim=3"]
    )
    assert (opts.binary, opts.num_utts, opts.dim, opts.scale) == (False, "ark:n.ark", 3, 1.5)
    assert args == ["a", "b"]
    opts, _ = cli.parse_args(CMD, ["--binary", "a", "b"])
    assert opts.binary is True


def test_config_file_and_command_line_precedence(tmp_path):
    conf = tmp_path / "x.conf"
    conf.write_text("# comment\n--dim=7   # trailing\n--scale=2.0\n\n")
    opts, _ = cli.parse_args(CMD, [f"--config={conf}", "--scale=3", "a", "b"])
    assert (opts.dim, opts.scale) == (7, 3.0)


@pytest.mark.parametrize(
    "argv,msg",
    [
        (["--bogus=1", "a", "b"], "invalid option --bogus"),
        (["--dim=x", "a", "b"], "invalid int"),
        (["--binary=maybe", "a", "b"], "invalid boolean"),
        (["a"], "expected 2 arguments"),
    ],
)
def test_bad_options_are_one_line_errors(argv, msg):
    with pytest.raises(XvjaxError, match=msg):
        cli.parse_args(CMD, argv)


def test_top_help_lists_commands(capsys):
    assert cli.run(["--help"]) == 0
    assert "Commands:" in capsys.readouterr().out


def test_top_help_reads_summaries_without_importing_commands():
    """`xvjax --help` reads the summaries from the declarations' source (the same text as the
    imported declarations) and imports neither a command module nor numpy."""
    assert cli.declared_summaries() == {n: c.summary for n, c in cli.load_commands().items()}
    code = (
        "import sys; from xvjax import cli; cli.run(['--help']); "
        "print(sorted(m for m in sys.modules if m == 'numpy' or m.endswith('commands')), "
        "file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.strip() == "[]"
    assert all(name in out.stdout for name in cli.COMMANDS)


def test_declarations_read_from_source_with_other_decorators():
    """A declaration followed by another decorator (its text alone is not one expression) is read
    from the whole module's syntax tree, as are the others of that module."""
    source = (
        '@command("a-cmd", "Does a.")\n@functools.cache\ndef a(opts):\n    pass\n\n\n'
        '@command(\n    "b-cmd",\n    "Does b (with parentheses).",\n    nargs=(1, 1),\n)\n'
        "def b(opts, x):\n    pass\n"
    )
    calls = cli._command_calls(source, "<test>")
    assert [(c.args[0].value, c.args[1].value) for c in calls] == [
        ("a-cmd", "Does a."),
        ("b-cmd", "Does b (with parentheses)."),
    ]
    b_only = source[source.index("@command(\n") :]  # the decorator text alone parses
    assert [c.args[0].value for c in cli._command_calls(b_only, "<test>")] == ["b-cmd"]


def test_unknown_command_exits_nonzero(capsys):
    assert cli.run(["no-such-command"]) == 1
    assert "unknown command" in capsys.readouterr().err


def test_common_options_parse_and_show_in_help():
    opts, _ = cli.parse_args(CMD, ["--verbose=2", "--print-args=false", "a", "b"])
    assert (opts.verbose, opts.print_args, opts.config) == (2, False, "")
    text = cli.usage_text(CMD)
    for name in ("--binary", "--num-utts", "--config", "--verbose", "--print-args", "--help"):
        assert f"  {name} " in text, name
