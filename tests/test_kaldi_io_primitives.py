"""The one primitive codec (`primitives`) and stream helpers (`streams`) shared by tables,
egs, nnet3 and PLDA I/O."""

from __future__ import annotations

import numpy as np

from xvjax.kaldi import holders, streams
from xvjax.kaldi.primitives import KaldiInput, KaldiOutput, format_float, format_floats


def test_text_floats_print_as_cpp_streams():
    assert [format_float(x) for x in (0.1, -2.5e-8, 1e7, 123456789.0)] == [
        "0.1",
        "-2.5e-08",
        "1e+07",
        "1.234568e+08",
    ]
    # glibc prints the sign of a NaN
    specials = np.array([np.inf, -np.inf, np.nan, -np.nan], dtype=np.float32)
    assert format_floats(specials) == "inf -inf nan -nan "
    assert holders.encode(specials, binary=False) == b" [ inf -inf nan -nan ]\n"


def test_double_objects_round_trip_exactly():
    rng = np.random.default_rng(0)
    mat, vec = rng.standard_normal((3, 4)), rng.standard_normal(5)
    for binary in (True, False):
        out = KaldiOutput(binary)
        out.matrix(mat, double=True)
        mat_bytes = out.getvalue()
        out.vector(vec, double=True)
        data = out.getvalue()
        # the table holders write the same bytes for float64 arrays
        head = holders.BINARY_HEADER if binary else b""
        assert holders.encode(mat, binary) == head + mat_bytes
        assert holders.encode(vec, binary) == head + data[len(mat_bytes) :]
        inp = KaldiInput(data, binary)
        m2, v2 = inp.matrix(dtype=np.float64), inp.vector(dtype=np.float64)
        if binary:
            assert np.array_equal(m2, mat) and np.array_equal(v2, vec)
        else:
            np.testing.assert_allclose(m2, mat, rtol=1e-6)
            np.testing.assert_allclose(v2, vec, rtol=1e-6)


def test_read_all_write_all_files_and_pipes(tmp_path):
    path = tmp_path / "x.bin"
    streams.write_all(str(path), b"abc\0def")
    assert streams.read_all(str(path)) == b"abc\0def"
    assert streams.read_all(f"cat {path} |") == b"abc\0def"
    assert streams.read_all(f"{path}:4") == b"def"
    streams.write_all(f"| cat > {tmp_path / 'y.bin'}", b"piped")
    assert (tmp_path / "y.bin").read_bytes() == b"piped"
