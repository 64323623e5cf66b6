"""Hypothesis properties: write/read round trips of random tables, and corrupted or truncated input
always giving a one-line XvjaxError (never another exception)."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from xvjax.errors import XvjaxError
from xvjax.kaldi import compressed, holders, tables

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

keys = st.text(
    alphabet=st.characters(
        min_codepoint=33, max_codepoint=0x2FF, blacklist_categories=("Zs", "Cc")
    ),
    min_size=1,
    max_size=12,
)
floats32 = st.floats(width=32, allow_nan=False, allow_infinity=True)
finite32 = st.floats(min_value=-1e5, max_value=1e5, width=32)


def arrays(dtype, ndim, elements):
    shape = st.tuples(*[st.integers(0, 7)] * ndim)
    return hnp.arrays(dtype, shape, elements=elements)


objects = st.one_of(
    arrays(np.float32, 2, floats32),
    arrays(np.float32, 1, floats32),
    arrays(np.float64, 2, st.floats(allow_nan=False)),
    arrays(np.float64, 1, st.floats(allow_nan=False)),
)
table_st = st.dictionaries(keys, objects, min_size=1, max_size=5)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.ndim == 2 and a.size == 0:  # Kaldi has one empty matrix: 0 x 0
        return b.shape == (0, 0)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


@SETTINGS
@given(table=table_st)
def test_binary_round_trip_is_bit_exact(tmp_path, table):
    path = tmp_path / "t.ark"
    tables.write_dict(f"ark,scp:{path},{tmp_path / 't.scp'}", table)
    for rspec in (f"ark:{path}", f"scp:{tmp_path / 't.scp'}"):
        got = tables.read_dict(rspec)
        assert list(got) == list(table)
        assert all(_same(table[k], got[k]) for k in table)
    ra = tables.RandomAccess(f"scp:{tmp_path / 't.scp'}")
    for k in reversed(list(table)):
        assert _same(table[k], ra[k])


@SETTINGS
@given(table=table_st)
def test_text_round_trip_keeps_seven_digits(tmp_path, table):
    path = tmp_path / "t.txt"
    tables.write_dict(f"ark,t:{path}", table)
    got = tables.read_dict(f"ark:{path}")
    assert list(got) == list(table)
    for k, ref in table.items():
        arr = got[k]
        if ref.size == 0:
            assert arr.size == 0
            continue
        assert arr.shape == ref.shape
        # text has no type: it reads back as float32 of the printed 7 significant digits
        with np.errstate(over="ignore"):
            want = np.array([float(format(v, ".7g")) for v in ref.ravel().tolist()]).astype(
                np.float32
            )
        np.testing.assert_array_equal(arr.ravel(), want)


@SETTINGS
@given(
    mat=hnp.arrays(np.float32, st.tuples(st.integers(1, 20), st.integers(1, 6)), elements=finite32),
    method=st.integers(1, 7),
)
def test_compression_round_trip_is_within_quantisation(mat, method):
    data = compressed.compress(mat, method)
    buf = io.BytesIO(holders.BINARY_HEADER + data)
    out = holders.read_object(buf, "matrix")
    assert out.shape == mat.shape and out.dtype == np.float32 and np.all(np.isfinite(out))
    lo, hi = float(mat.min()), float(mat.max())
    span = hi - lo if hi > lo else 1.0 + abs(lo)
    tol = 1e-6 * max(abs(lo), abs(hi), 1.0)  # float32 rounding of the decoded values
    if method == 2 or (method == 1 and mat.shape[0] > 8):  # CM: within the data's range
        assert out.min() >= lo - span / 65535 - tol and out.max() <= hi + span / 65535 + tol
        return
    fixed = {4: (-32768.0, 65535.0, 65535.0), 6: (0.0, 255.0, 255.0), 7: (0.0, 1.0, 255.0)}
    if method in fixed:  # fixed range: values are clipped into it, then quantised
        base, width, levels = fixed[method]
        ref = np.clip(mat.astype(np.float64), base, base + width)
        step, tol = width / levels, tol + 1e-6 * (abs(base) + width)
    else:  # 1 (few rows), 3: two bytes over [min, max]; 5: one byte
        ref, step = mat.astype(np.float64), span / (255.0 if method == 5 else 65535.0)
    assert np.max(np.abs(out.astype(np.float64) - ref)) <= step + tol


@SETTINGS
@given(table=table_st, data=st.data(), text=st.booleans())
def test_corrupted_archives_give_one_line_errors(tmp_path, table, data, text):
    path = tmp_path / "c.ark"
    tables.write_dict(f"ark{',t' if text else ''}:{path}", table)
    raw = bytearray(path.read_bytes())
    how = data.draw(st.sampled_from(["truncate", "flip", "garbage"]))
    if how == "truncate":
        raw = raw[: data.draw(st.integers(0, max(len(raw) - 1, 0)))]
    elif how == "flip":
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    else:
        raw += data.draw(st.binary(min_size=1, max_size=40))
    path.write_bytes(bytes(raw))
    try:
        for _ in tables.read(f"ark:{path}"):
            pass
    except XvjaxError as e:
        msg = str(e)
        assert "\n" not in msg and str(path) in msg
    try:
        tables.read_object(f"{path}:{min(8, len(raw))}" if len(raw) > 8 else str(path))
    except XvjaxError as e:
        assert "\n" not in str(e)


@SETTINGS
@given(
    mats=st.lists(
        hnp.arrays(np.float32, st.tuples(st.integers(1, 12), st.integers(1, 4)), elements=finite32),
        min_size=1,
        max_size=3,
    ),
    method=st.integers(1, 7),
    data=st.data(),
)
def test_corrupted_compressed_archives_give_one_line_errors(tmp_path, mats, method, data):
    path = tmp_path / "cm.ark"
    tables.write_dict(
        f"ark:{path}", {f"k{i}": m for i, m in enumerate(mats)}, compression_method=method
    )
    raw = bytearray(path.read_bytes())
    cut = data.draw(st.integers(0, len(raw) - 1))
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] = data.draw(st.integers(0, 255))
    path.write_bytes(bytes(raw[:cut] if data.draw(st.booleans()) else raw))
    try:
        for _, mat in tables.read(f"ark:{path}"):
            assert mat.ndim == 2
    except XvjaxError as e:
        assert "\n" not in str(e) and str(path) in str(e)
