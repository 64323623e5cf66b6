"""Specifiers, options (s, cs, o, p, t, b), pipes, offsets/ranges, random access, atomic writers and
the one-line errors for bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from xvjax.errors import XvjaxError
from xvjax.kaldi import tables


def _mats(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return {f"utt{i}": rng.standard_normal((3 + i, 5)).astype(np.float32) for i in range(n)}


@pytest.fixture()
def ark(tmp_path):
    mats = _mats()
    path = tmp_path / "a.ark"
    tables.write_dict(f"ark,scp:{path},{tmp_path / 'a.scp'}", mats)
    return path, mats


# ----------------------------------------------------------------------------- specifiers


def test_parse_rspecifiers():
    s = tables.parse_rspecifier("ark,s,cs,p,o:foo.ark")
    assert (s.type, s.filename, s.sorted, s.called_sorted, s.permissive, s.once) == (
        "ark",
        "foo.ark",
        True,
        True,
        True,
        True,
    )
    s = tables.parse_rspecifier("b,scp,ns,np:a b.scp")
    assert (s.type, s.filename, s.sorted, s.permissive) == ("scp", "a b.scp", False, False)
    assert tables.parse_rspecifier("ark:gunzip -c a.gz |").filename == "gunzip -c a.gz |"
    assert tables.parse_rspecifier("ark:-").filename == "-"


def test_parse_wspecifiers():
    w = tables.parse_wspecifier("ark,scp,t,f:a.ark,a.scp")
    assert (w.type, w.ark, w.scp, w.binary, w.flush) == ("both", "a.ark", "a.scp", False, True)
    assert tables.parse_wspecifier("ark:| gzip -c > a.gz").ark == "| gzip -c > a.gz"
    assert tables.parse_wspecifier("ark,b:-").binary is True


@pytest.mark.parametrize(
    "spec",
    [
        "foo.ark",
        "ark,scp:a.ark",
        "scp,ark:a.scp,a.ark",
        "arc:a",
        "ark,x:a",
        "ark:a.ark ",
        "ark,ark:a",
    ],
)
def test_bad_specifiers_are_clear_errors(spec):
    with pytest.raises(XvjaxError, match="bad [rw]specifier"):
        if spec.startswith("ark,scp") or spec.startswith("scp,ark") or spec == "ark,ark:a":
            tables.parse_wspecifier(spec)
        else:
            tables.parse_rspecifier(spec)


# ----------------------------------------------------------------------------- reading


def test_scp_offsets_ranges_and_pipes(ark, tmp_path):
    path, mats = ark
    scp_lines = (tmp_path / "a.scp").read_text().splitlines()
    key, rx = scp_lines[2].split()
    assert rx.startswith(f"{path}:")
    tables.write_matrix(str(tmp_path / "one.mat"), mats["utt0"])
    (tmp_path / "r.scp").write_text(
        f"{key} {rx}[1:2]\n{key}_cols {rx}[0:1,2:4]\npiped cat {tmp_path / 'one.mat'} |\n"
    )
    got = list(tables.read(f"scp:{tmp_path / 'r.scp'}"))
    np.testing.assert_array_equal(got[0][1], mats[key][1:3])
    np.testing.assert_array_equal(got[1][1], mats[key][0:2, 2:5])
    # a piped scp entry reads the single object the command writes
    np.testing.assert_array_equal(got[2][1], mats["utt0"])
    assert tables.read_matrix(f"{rx}[0:0]").shape == (1, 5)


def test_input_pipe_stdin_and_output_pipe(ark, tmp_path):
    path, mats = ark
    gz = tmp_path / "a.gz"
    with tables.Writer(f"ark:| gzip -c > {gz}") as w:
        for k, v in mats.items():
            w[k] = v
    got = tables.read_dict(f"ark:gunzip -c {gz} |")
    assert list(got) == list(mats) and all(np.array_equal(got[k], mats[k]) for k in mats)
    # ark:- reads stdin and writes stdout (as a child process so stdin/stdout are real pipes)
    code = (
        "from xvjax.kaldi import tables\n"
        "with tables.Writer('ark,t:-') as w:\n"
        "    for k, v in tables.read('ark:-'): w[k] = v\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=path.read_bytes(), capture_output=True, check=True
    )
    text = tmp_path / "t.ark"
    text.write_bytes(out.stdout)
    assert out.stdout.startswith(b"utt0  [\n")
    got = tables.read_dict(f"ark:{text}")
    assert all(np.allclose(got[k], mats[k], rtol=1e-6) for k in mats)


def test_failing_input_command_is_an_error(tmp_path):
    with pytest.raises(XvjaxError, match="exited with status"):
        list(tables.read("ark:cat /nonexistent/file 2>/dev/null |"))


def test_random_access_scp_and_sorted_archive(ark, tmp_path):
    path, mats = ark
    ra = tables.RandomAccess(f"scp:{tmp_path / 'a.scp'}")
    for key in ("utt3", "utt0", "utt2"):
        np.testing.assert_array_equal(ra[key], mats[key])
    assert "utt1" in ra and "nope" not in ra and ra.get("nope") is None
    with pytest.raises(XvjaxError, match="key 'nope' not found"):
        ra["nope"]
    ra = tables.RandomAccess(f"ark,s,cs:{path}")
    np.testing.assert_array_equal(ra["utt1"], mats["utt1"])
    np.testing.assert_array_equal(ra["utt3"], mats["utt3"])
    assert "utt0" not in ra  # with s,cs: earlier keys are gone, smaller keys known absent
    ra = tables.RandomAccess(f"ark,o:{path}")
    np.testing.assert_array_equal(ra["utt2"], mats["utt2"])
    assert ra.get("utt2") is None  # o: each object is read once
    assert sorted(tables.RandomAccess(f"ark:{path}").keys()) == sorted(mats)


def test_dtype_and_kind(ark, tmp_path):
    path, mats = ark
    got = dict(tables.read(f"ark:{path}", dtype=np.float64))
    assert got["utt0"].dtype == np.float64
    tables.write_dict(
        f"ark:{tmp_path / 'd.ark'}", {k: v.astype(np.float64) for k, v in mats.items()}
    )
    d = tables.read_dict(f"ark:{tmp_path / 'd.ark'}")
    assert d["utt1"].dtype == np.float64 and (tmp_path / "d.ark").read_bytes()[7:10] == b"DM "
    with pytest.raises(XvjaxError, match="key 'utt0': expected a vector, found a float matrix"):
        tables.read_dict(f"ark:{path}", kind="vector")


def test_int32_vectors_and_scalars_round_trip(tmp_path):
    ali = {"a": np.array([1, 2, -3], dtype=np.int32), "b": np.array([7], dtype=np.int32)}
    for spec in ("ark", "ark,t"):
        tables.write_dict(f"{spec}:{tmp_path / 'ali'}", ali)
        got = tables.read_dict(f"ark:{tmp_path / 'ali'}", kind="int32_vector")
        assert all(np.array_equal(got[k], ali[k]) and got[k].dtype == np.int32 for k in ali)
    assert (tmp_path / "ali").read_text() == "a 1 2 -3 \nb 7 \n"
    tables.write_dict(f"ark:{tmp_path / 'n'}", {"x": 3, "y": -1})
    assert tables.read_dict(f"ark:{tmp_path / 'n'}", kind="int32") == {"x": 3, "y": -1}
    tables.write_dict(f"ark,t:{tmp_path / 'f'}", {"x": 0.25})
    assert tables.read_dict(f"ark:{tmp_path / 'f'}", kind="float") == {"x": 0.25}


# ----------------------------------------------------------------------------- bad input


def _corrupt(tmp_path, ark_path, cut=None, replace=None):
    data = ark_path.read_bytes()
    if cut is not None:
        data = data[:cut]
    if replace is not None:
        data = data.replace(*replace)
    bad = tmp_path / "bad.ark"
    bad.write_bytes(data)
    return bad


def test_truncated_archive_names_file_and_key(ark, tmp_path):
    path, _ = ark
    bad = _corrupt(tmp_path, path, cut=len(path.read_bytes()) - 7)
    with pytest.raises(XvjaxError, match=rf"ark:{bad}: key 'utt3': truncated float matrix data"):
        tables.read_dict(f"ark:{bad}")


def test_permissive_archive_stops_with_warning(ark, tmp_path, caplog):
    path, _ = ark
    bad = _corrupt(tmp_path, path, cut=len(path.read_bytes()) - 7)
    got = tables.read_dict(f"ark,p:{bad}")
    assert list(got) == ["utt0", "utt1", "utt2"]
    assert "permissive" in caplog.text and "utt3" in caplog.text


def test_wrong_token_and_unsorted_keys(ark, tmp_path):
    path, _ = ark
    bad = _corrupt(tmp_path, path, replace=(b"utt1 \0BFM ", b"utt1 \0BXM "))
    with pytest.raises(XvjaxError, match="key 'utt1': unknown object token b'XM'"):
        tables.read_dict(f"ark:{bad}")
    uns = tmp_path / "u.ark"
    tables.write_dict(f"ark:{uns}", {"b": np.ones(2, np.float32), "a": np.ones(2, np.float32)})
    assert list(tables.read_dict(f"ark:{uns}")) == ["b", "a"]  # no promise, no check
    with pytest.raises(XvjaxError, match="unsorted key 'a' after 'b'"):
        tables.read_dict(f"ark,s:{uns}")
    dup = tmp_path / "dup.ark"
    dup.write_bytes(uns.read_bytes().replace(b"a \0B", b"b \0B"))
    with pytest.raises(XvjaxError, match="duplicate key 'b'"):
        tables.read_dict(f"ark:{dup}")


def test_missing_scp_target_and_permissive_scp(ark, tmp_path, caplog):
    path, mats = ark
    scp = tmp_path / "m.scp"
    scp.write_text(
        f"utt0 {path}:{(tmp_path / 'a.scp').read_text().split()[1].rsplit(':', 1)[1]}\nutt9 {tmp_path}/gone.ark:12\n"
    )
    with pytest.raises(XvjaxError, match=r"key 'utt9' .*gone.ark.*No such file"):
        tables.read_dict(f"scp:{scp}")
    got = tables.read_dict(f"scp,p:{scp}")
    assert list(got) == ["utt0"] and "skipped" in caplog.text
    with pytest.raises(XvjaxError, match="offset 99999 is past the end"):
        tables.read_matrix(f"{path}:99999")


def test_non_utf8_text_tables(tmp_path):
    bad = tmp_path / "utt2spk"
    bad.write_bytes(b"u1 s1\nu2 s\xff2\n")
    with pytest.raises(XvjaxError, match=r"utt2spk:2: not UTF-8"):
        tables.read_text_table(str(bad))
    bad.write_bytes(b"u1 s1\nu1 s2\n")
    with pytest.raises(XvjaxError, match="duplicate key 'u1'"):
        tables.read_text_table(str(bad))
    bad.write_bytes(b"u2 s1\nu1 s2\n")
    with pytest.raises(XvjaxError, match="not sorted"):
        tables.read_text_table(str(bad), sorted_check=True)
    assert tables.read_text_lists(f"ark:{bad}") == {"u2": ["s1"], "u1": ["s2"]}


# ----------------------------------------------------------------------------- writers


def test_writer_is_atomic_on_failure(tmp_path):
    out, scp = tmp_path / "o.ark", tmp_path / "o.scp"
    with pytest.raises(RuntimeError):
        with tables.Writer(f"ark,scp:{out},{scp}") as w:
            w["a"] = np.ones((2, 2), np.float32)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(XvjaxError, match="invalid key 'a b'"):
        with tables.Writer(f"ark:{out}") as w:
            w["ok"] = np.ones(2, np.float32)
            w["a b"] = np.ones(2, np.float32)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(XvjaxError, match="only matrices can be compressed"):
        with tables.Writer(f"ark:{out}", compression_method=2) as w:
            w["v"] = np.ones(3, np.float32)
    assert list(tmp_path.iterdir()) == []


def test_atomic_outputs_get_plain_open_permissions(tmp_path):
    """Temp-then-rename outputs (tables and fileutil) get the mode open() gives, not mkstemp's 0600."""
    import os

    from xvjax import fileutil

    with open(tmp_path / "plain", "wb"):
        pass
    want = os.stat(tmp_path / "plain").st_mode & 0o777
    tables.write_dict(f"ark,scp:{tmp_path / 'o.ark'},{tmp_path / 'o.scp'}", _mats(1))
    with fileutil.atomic_open(tmp_path / "sub" / "f.txt", "w") as f:
        f.write("x")
    with fileutil.atomic_path(tmp_path / "p.bin") as tmp:
        open(tmp, "wb").close()
    for name in ("o.ark", "o.scp", "sub/f.txt", "p.bin"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == want, name
    assert sorted(os.listdir(tmp_path / "sub")) == ["f.txt"]


def test_scp_wspecifier_writes_to_listed_files(tmp_path):
    (tmp_path / "targets.scp").write_text(f"a {tmp_path}/a.mat\nb {tmp_path}/b.mat\n")
    with tables.Writer(f"scp:{tmp_path / 'targets.scp'}") as w:
        w["a"] = np.eye(2, dtype=np.float32)
    np.testing.assert_array_equal(tables.read_matrix(str(tmp_path / "a.mat")), np.eye(2))
    with pytest.raises(XvjaxError, match="key 'c' is not in"):
        with tables.Writer(f"scp:{tmp_path / 'targets.scp'}") as w:
            w["c"] = np.eye(2, dtype=np.float32)


def test_single_object_files_and_dev_null(tmp_path):
    m = np.arange(6, dtype=np.float32).reshape(2, 3)
    tables.write_matrix(str(tmp_path / "m.mat"), m)
    assert (tmp_path / "m.mat").read_bytes()[:5] == b"\0BFM "
    tables.write_matrix(str(tmp_path / "m.txt"), m, binary=False)
    assert (tmp_path / "m.txt").read_text() == " [\n  0 1 2 \n  3 4 5 ]\n"
    for name in ("m.mat", "m.txt"):
        np.testing.assert_array_equal(tables.read_matrix(str(tmp_path / name)), m)
    np.testing.assert_array_equal(tables.read_matrix(f"cat {tmp_path / 'm.mat'} |"), m)
    tables.write_dict("ark:/dev/null", {"a": m})
    with pytest.raises(XvjaxError, match="cannot open"):
        tables.read_matrix(str(tmp_path / "nope.mat"))


def test_failing_output_command_is_an_error():
    big = {f"k{i}": np.zeros((2000, 40), np.float32) for i in range(8)}  # more than a pipe buffer
    with pytest.raises(
        XvjaxError, match="output command 'false' stopped reading|exited with status 1"
    ):
        tables.write_dict("ark:| false", big)
    with pytest.raises(XvjaxError, match="exited with status 3"):
        tables.write_dict("ark:| cat > /dev/null; exit 3", {"a": np.ones(2, np.float32)})
