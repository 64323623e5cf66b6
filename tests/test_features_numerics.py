"""Front-end numerics against Kaldi's own outputs (../shared/fixtures/kaldi/features, dither 0)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import soundfile

from xvjax.errors import XvjaxError
from xvjax.features import kaldi_fft, reference
from xvjax.features.cmvn import sliding_cmn_numpy
from xvjax.features.frontend import compute_vad, prepare_feats, select_voiced_frames, sliding_cmn
from xvjax.features.mfcc import (
    compute_fbank,
    compute_mfcc,
    extract_frames,
    first_sample_offset,
    num_frames,
    resolve_fft_impl,
)
from xvjax.features.options import CmnOptions, FbankOptions, MfccOptions, VadOptions
from xvjax.features.vad import compute_vad_numpy
from xvjax.kaldi import tables
from xvjax.kaldi.nnet3 import Nnet
from xvjax.model.nnet3_import import nnet3_to_flax
from xvjax.model.xvector_compute import Extractor, extract_xvectors

U16 = ["u1_16k", "u2_16k", "u5_16k", "u6_16k_silence", "u7_16k_long"]
U8 = ["u3_8k", "u4_8k"]


def _load(fx, names):
    waves = [soundfile.read(fx / "audio" / f"{n}.wav", dtype="int16")[0] for n in names]
    batch = np.zeros((len(waves), max(map(len, waves))), np.float32)
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    return batch, np.array([len(w) for w in waves], np.int32)


def _text(fx, name):
    return tables.read_dict(f"ark,t:{fx / 'features' / name}")


def _pad(table, keys):
    dim = table[keys[0]].shape[1]
    out = np.zeros((len(keys), max(len(table[k]) for k in keys), dim), np.float32)
    for i, k in enumerate(keys):
        out[i, : len(table[k])] = table[k]
    return out, np.array([len(table[k]) for k in keys], np.int32)


def _cases(fx):
    conf = fx / "features"
    return {
        "mfcc16k": (U16, MfccOptions.from_config_file(str(conf / "mfcc16k.conf"))),
        "mfcc8k": (U8, MfccOptions.from_config_file(str(conf / "mfcc8k.conf"))),
        "mfcc16k_defaults": (U16, MfccOptions(dither=0.0)),
        "mfcc8k_defaults": (U8, MfccOptions(dither=0.0, sample_frequency=8000)),
        "fbank16k_80": (U16, FbankOptions(dither=0.0, num_mel_bins=80)),
    }


@pytest.fixture(scope="module")
def computed(kaldi_fixtures):
    out = {}
    for name, (utts, opts) in _cases(kaldi_fixtures).items():
        wav, lens = _load(kaldi_fixtures, utts)
        fn = compute_fbank if isinstance(opts, FbankOptions) else compute_mfcc
        feats, nf = jax.device_get(fn(jnp.asarray(wav), jnp.asarray(lens), opts))
        out[name] = {u: feats[i, : nf[i]] for i, u in enumerate(utts)}
    return out


@pytest.mark.parametrize(
    "name", ["mfcc16k", "mfcc8k", "mfcc16k_defaults", "mfcc8k_defaults", "fbank16k_80"]
)
def test_features_match_kaldi(kaldi_fixtures, computed, name):
    """99.9% of values within 1e-3 and all within 1e-2 (snip-edges false: *k, true: defaults)."""
    ref = _text(kaldi_fixtures, f"{name}.txt")
    ours = computed[name]
    assert sorted(ours) == sorted(ref)
    errs = []
    for utt, r in ref.items():
        assert ours[utt].shape == r.shape, utt
        errs.append(np.abs(ours[utt] - r).ravel())
    err = np.concatenate(errs)
    assert np.mean(err <= 1e-3) >= 0.999, np.mean(err <= 1e-3)
    assert err.max() <= 1e-2, err.max()


def test_xla_fft_path_close_to_kaldi(kaldi_fixtures):
    utts, opts = _cases(kaldi_fixtures)["mfcc8k"]
    wav, lens = _load(kaldi_fixtures, utts)
    feats, nf = compute_mfcc(jnp.asarray(wav), jnp.asarray(lens), opts, fft_impl="xla")
    ref = _text(kaldi_fixtures, "mfcc8k.txt")
    for i, u in enumerate(utts):
        np.testing.assert_allclose(np.asarray(feats)[i, : nf[i]], ref[u], atol=1e-2)


def test_kaldi_fft_replay_is_a_dft():
    x = np.random.default_rng(0).standard_normal((5, 256)).astype(np.float32) * 1000
    ours = kaldi_fft.power_spectrum_numpy(x, 256)
    exact = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    np.testing.assert_allclose(ours, exact, rtol=1e-4, atol=1e-5 * exact.max())


@pytest.mark.parametrize(
    "window_size,n_fft,dc,preemph", [(400, 512, True, 0.97), (200, 256, True, 0.97),
                                      (256, 256, False, 0.0), (25, 32, True, 0.5)],
)  # fmt: skip
def test_compiled_replay_is_the_numpy_replay(kaldi_fixtures, window_size, n_fft, dc, preemph):
    """The numba kernel the front end runs gives the numpy reference's float32 bits: power and both
    energies, on speech, quiet, silent and noisy frames (in several threads' shares)."""
    wav, lens = _load(kaldi_fixtures, ["u5_16k"])
    starts = np.arange(0, int(lens[0]) - window_size, 97)[:700]
    frames = wav[0, starts[:, None] + np.arange(window_size)]
    frames[::7] *= 1e-3
    frames[::13] = 0.0
    frames[::11] += np.random.default_rng(0).standard_normal(frames[::11].shape).astype(np.float32)
    window = np.hanning(window_size).astype(np.float32)
    ours = kaldi_fft.process_and_power(frames, window, n_fft, dc, preemph, min_chunk=64)
    ref = kaldi_fft.process_and_power_numpy(frames, window, n_fft, dc, preemph)
    for a, b in zip(ours, ref, strict=True):
        assert a.dtype == np.float32 and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("snip_edges", [True, False])
def test_kernel_framing_is_extract_frames(kaldi_fixtures, snip_edges):
    """`waveform_power` (framing inside the kernel, SIMD lane groups across utterances) gives the
    bits of the numpy reference on `extract_frames`' frames (edge reflection, short and empty rows,
    dither noise), and zeros past each utterance's frames."""
    opts = MfccOptions(snip_edges=snip_edges, dither=0.0)
    wav, _ = _load(kaldi_fixtures, ["u7_16k_long"])
    lengths = np.array([30000, 401, 0, 12345, 1], np.int32)
    batch = np.stack([wav[0, :30000]] * len(lengths))
    nf = num_frames(lengths, opts)
    frames = int(num_frames(batch.shape[1], opts))
    framed = np.asarray(extract_frames(jnp.asarray(batch), jnp.asarray(lengths), opts))
    noise = np.random.default_rng(0).standard_normal(framed.shape).astype(np.float32)
    window = np.hanning(opts.window_size).astype(np.float32)
    ours = kaldi_fft.waveform_power(
        batch, lengths, nf, frames, opts.window_shift, first_sample_offset(opts), window,
        opts.padded_window_size, True, 0.97, noise=noise, min_chunk=64,
    )  # fmt: skip
    ref = kaldi_fft.process_and_power_numpy(framed + noise, window, 512, True, 0.97)
    valid = np.arange(frames)[None, :] < nf[:, None]
    for a, b in zip(ours, ref, strict=True):
        assert a[valid].tobytes() == b[valid].tobytes()
        assert not a[~valid].any()


@pytest.mark.parametrize("snip_edges", [True, False])
@pytest.mark.parametrize("n", [1, 7, 150, 399, 400, 401, 1000, 1234])
def test_framing_matches_kaldi_loop(snip_edges, n):
    """Frame count and edge reflection (incl. repeated reflection of very short input)."""
    opts = MfccOptions(snip_edges=snip_edges, dither=0.0)
    wave = np.arange(1, n + 1, dtype=np.float32)
    total = n + 37  # padded batch: the utterance's own length decides the reflection
    batch = np.zeros((1, total), np.float32)
    batch[0, :n] = wave
    frames = np.asarray(extract_frames(jnp.asarray(batch), jnp.asarray([n]), opts))[0]
    nf = reference.num_frames(n, opts)
    assert int(num_frames(n, opts)) == nf
    for f in range(nf):
        np.testing.assert_array_equal(frames[f], reference._frame(wave, f, opts))


@pytest.mark.parametrize("window_type", ["povey", "hanning", "hamming", "blackman", "rectangular"])
def test_window_functions_match_scipy(window_type):
    """Independent check of `mel.window_function` (the float64 reference shares it, so the window
    variants below cannot catch a wrong window formula)."""
    from scipy.signal import windows

    from xvjax.features import mel as melmod

    n = MfccOptions().window_size
    expected = {
        "povey": windows.hann(n, sym=True) ** 0.85,
        "hanning": windows.hann(n, sym=True),
        "hamming": windows.hamming(n, sym=True),
        "blackman": windows.blackman(n, sym=True),  # Kaldi's blackman_coeff default 0.42
        "rectangular": np.ones(n),
    }[window_type]
    ours = melmod.window_function(MfccOptions(window_type=window_type))
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-7)


VARIANTS = [
    dict(window_type="hamming"),
    dict(window_type="hanning", preemphasis_coefficient=0.0),
    dict(window_type="rectangular", remove_dc_offset=False),
    dict(window_type="blackman", blackman_coeff=0.4),
    dict(window_type="sine"),
    dict(round_to_power_of_two=False),
    dict(use_energy=False, htk_compat=True),
    dict(htk_compat=True),
    dict(raw_energy=False, energy_floor=1.0),
    dict(cepstral_lifter=0.0, num_ceps=20, num_mel_bins=40, low_freq=64, high_freq=-400),
    dict(frame_length=20, frame_shift=12.5, snip_edges=False),
    dict(vtln_warp=0.9),
]


@pytest.mark.parametrize(
    "variant,fft_impl",
    [(v, "kaldi") for v in VARIANTS] + [(v, "xla") for v in VARIANTS[::4]],
    ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()),
)
def test_mfcc_options_match_float64_reference(kaldi_fixtures, variant, fft_impl):
    wav, lens = _load(kaldi_fixtures, ["u5_16k"])
    opts = MfccOptions(dither=0.0, **variant)
    feats, nf = compute_mfcc(jnp.asarray(wav), jnp.asarray(lens), opts, fft_impl=fft_impl)
    ref = reference.features_numpy(wav[0, : lens[0]], opts)
    assert int(nf[0]) == len(ref)
    np.testing.assert_allclose(np.asarray(feats)[0, : nf[0]], ref, atol=1e-2, rtol=1e-4)


@pytest.mark.parametrize(
    "variant", [dict(use_energy=True), dict(use_energy=True, htk_compat=True),
                dict(use_log_fbank=False), dict(use_power=False)],
)  # fmt: skip
def test_fbank_options_match_float64_reference(kaldi_fixtures, variant):
    wav, lens = _load(kaldi_fixtures, ["u5_16k"])
    opts = FbankOptions(dither=0.0, **variant)
    feats, nf = compute_fbank(jnp.asarray(wav), jnp.asarray(lens), opts)
    ref = reference.features_numpy(wav[0, : lens[0]], opts)
    np.testing.assert_allclose(np.asarray(feats)[0, : nf[0]], ref, rtol=1e-3, atol=1e-2)


def test_dither_is_keyed_and_deterministic(kaldi_fixtures):
    wav, lens = _load(kaldi_fixtures, ["u5_16k"])
    opts = MfccOptions(dither=1.0)
    args = (jnp.asarray(wav), jnp.asarray(lens), opts)
    a = np.asarray(compute_mfcc(*args, jax.random.key(1))[0])
    b = np.asarray(compute_mfcc(*args, jax.random.key(1))[0])
    c = np.asarray(compute_mfcc(*args, jax.random.key(2))[0])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    undithered = np.asarray(
        compute_mfcc(jnp.asarray(wav), jnp.asarray(lens), MfccOptions(dither=0.0))[0]
    )
    nf = int(lens[0]) // 160
    loud = undithered[0, :nf, 0] > 15
    np.testing.assert_allclose(a[0, :nf, 0][loud], undithered[0, :nf, 0][loud], atol=0.05)
    with pytest.raises(XvjaxError, match="PRNG key"):
        compute_mfcc(*args)


def test_vad_identical(kaldi_fixtures, computed):
    vopts = VadOptions.from_config_file(str(kaldi_fixtures / "features" / "vad.conf"))
    for tag, utts in (("16k", U16), ("8k", U8)):
        ref = _text(kaldi_fixtures, f"vad{tag}.txt")
        mfcc = _text(kaldi_fixtures, f"mfcc{tag}.txt")
        feats, nf = _pad(mfcc, utts)
        batched = np.asarray(compute_vad(jnp.asarray(feats), jnp.asarray(nf), vopts))
        ours, onf = _pad(computed[f"mfcc{tag}"], utts)
        from_ours = np.asarray(compute_vad(jnp.asarray(ours), jnp.asarray(onf), vopts))
        for i, u in enumerate(utts):
            np.testing.assert_array_equal(batched[i, : nf[i]], ref[u])
            np.testing.assert_array_equal(compute_vad_numpy(mfcc[u], vopts), ref[u])
            np.testing.assert_array_equal(from_ours[i, : nf[i]], ref[u])  # from our own MFCC
            assert not batched[i, nf[i] :].any()


@pytest.mark.parametrize(
    "tag,opts",
    [
        ("cmn16k", CmnOptions(cmn_window=300, center=True)),
        ("cmn8k", CmnOptions(cmn_window=300, center=True)),
        ("cmn16k_normvars", CmnOptions(cmn_window=200, min_cmn_window=50, center=True, norm_vars=True)),
    ],
)  # fmt: skip
def test_sliding_cmn_matches_kaldi(kaldi_fixtures, tag, opts):
    ref = _text(kaldi_fixtures, f"{tag}.txt")
    mfcc = _text(kaldi_fixtures, f"mfcc{'8k' if '8k' in tag else '16k'}.txt")
    keys = sorted(mfcc)
    feats, nf = _pad(mfcc, keys)
    out = np.asarray(sliding_cmn(jnp.asarray(feats), jnp.asarray(nf), opts))
    for i, k in enumerate(keys):
        np.testing.assert_allclose(out[i, : nf[i]], ref[k], atol=1e-4, rtol=0)
        np.testing.assert_allclose(sliding_cmn_numpy(mfcc[k], opts), ref[k], atol=1e-4, rtol=0)
        assert not out[i, nf[i] :].any()


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("norm_vars", [False, True])
@pytest.mark.parametrize("n", [1, 2, 40, 99, 100, 101, 350, 777])
def test_sliding_cmn_windows_and_short_utterances(center, norm_vars, n):
    """Batched float32 version == Kaldi's double loop rule, incl. utterances shorter than the window."""
    opts = CmnOptions(cmn_window=100, min_cmn_window=30, center=center, norm_vars=norm_vars)
    x = np.random.default_rng(n).standard_normal((n, 3)).astype(np.float32) * 5 + 20
    ref = _kaldi_sliding_loop(x.astype(np.float64), opts)
    batch = np.zeros((2, 800, 3), np.float32)
    batch[1, :n] = x
    out = np.asarray(sliding_cmn(jnp.asarray(batch), jnp.asarray([0, n]), opts))[1, :n]
    np.testing.assert_allclose(out, ref, atol=2e-4 if norm_vars else 1e-4)
    np.testing.assert_allclose(sliding_cmn_numpy(x, opts), ref, atol=1e-5)


def _kaldi_sliding_loop(x, opts):
    """Direct transcription of the window rule with explicit sums (independent of cmvn.py)."""
    n = len(x)
    out = np.zeros_like(x)
    for t in range(n):
        if opts.center:
            start = t - opts.cmn_window // 2
            end = start + opts.cmn_window
        else:
            start, end = t - opts.cmn_window, t + 1
        if start < 0:
            end -= start
            start = 0
        if not opts.center and end > t:
            end = max(t + 1, opts.min_cmn_window)
        if end > n:
            start = max(start - (end - n), 0)
            end = n
        win = x[start:end]
        out[t] = x[t] - win.mean(0)
        if opts.norm_vars:
            if len(win) == 1:
                out[t] = 0.0
            else:
                var = np.maximum((win**2).mean(0) - win.mean(0) ** 2, 1e-10)
                out[t] /= np.sqrt(var)
    return out


def test_select_voiced_frames_identical(kaldi_fixtures):
    for tag in ("16k", "8k"):
        cmn = _text(kaldi_fixtures, f"cmn{tag}.txt")
        vad = _text(kaldi_fixtures, f"vad{tag}.txt")
        prepared = _text(kaldi_fixtures, f"prepared{tag}.txt")
        keys = sorted(cmn)
        feats, nf = _pad(cmn, keys)
        voiced = np.zeros(feats.shape[:2], np.float32)
        for i, k in enumerate(keys):
            voiced[i, : nf[i]] = vad[k]
        out, counts = select_voiced_frames(jnp.asarray(feats), jnp.asarray(nf), jnp.asarray(voiced))
        out = np.asarray(out)
        for i, k in enumerate(keys):
            if k not in prepared:  # the silent file: Kaldi skips it, we return 0 frames
                assert int(counts[i]) == 0 and not out[i].any()
                continue
            np.testing.assert_array_equal(out[i, : counts[i]], prepared[k])
            assert not out[i, counts[i] :].any()


def test_prepare_feats_end_to_end(kaldi_fixtures):
    """wav -> MFCC -> sliding CMN -> voiced frames, vs Kaldi's prepared16k (same frames kept)."""
    opts = MfccOptions.from_config_file(str(kaldi_fixtures / "features" / "mfcc16k.conf"))
    vopts = VadOptions.from_config_file(str(kaldi_fixtures / "features" / "vad.conf"))
    wav, lens = _load(kaldi_fixtures, U16)
    feats, counts = prepare_feats(jnp.asarray(wav), jnp.asarray(lens), opts, vopts)
    feats = np.asarray(feats)
    prepared = _text(kaldi_fixtures, "prepared16k.txt")
    errs = []
    for i, u in enumerate(U16):
        if u not in prepared:
            assert int(counts[i]) == 0
            continue
        assert int(counts[i]) == len(prepared[u])
        errs.append(np.abs(feats[i, : counts[i]] - prepared[u]).ravel())
    err = np.concatenate(errs)
    assert np.mean(err <= 1e-3) >= 0.999 and err.max() <= 1e-2


def test_prepare_feats_bad_input_is_isolated(kaldi_fixtures):
    """NaN/inf audio, too-short and all-zero utterances get 0 frames; the others are unchanged."""
    opts = dataclasses.replace(MfccOptions.from_config_file(
        str(kaldi_fixtures / "features" / "mfcc16k.conf")))  # fmt: skip
    vopts = VadOptions(
        vad_energy_threshold=5.5, vad_frames_context=2, vad_proportion_threshold=0.12
    )
    wav, _ = _load(kaldi_fixtures, ["u5_16k"])
    n = wav.shape[1]
    batch = np.zeros((5, n), np.float32)
    batch[:] = wav[0]
    full = np.full((5,), n, np.int32)
    good = np.asarray(prepare_feats(jnp.asarray(batch), jnp.asarray(full), opts, vopts)[0])[0]
    batch[1, 100] = np.nan
    batch[2, 5] = np.inf
    batch[4] = 0.0
    lengths = np.array([n, n, n, 50, n], np.int32)  # row 3: shorter than half a frame shift
    feats, counts = prepare_feats(jnp.asarray(batch), jnp.asarray(lengths), opts, vopts)
    feats, counts = np.asarray(feats), np.asarray(counts)
    assert counts.tolist()[1:] == [0, 0, 0, 0]
    np.testing.assert_array_equal(feats[0], good)
    assert np.isfinite(feats).all() and not feats[1:].any()


@pytest.mark.parametrize("logn", [1, 2, 3, 4, 5, 8])
def test_kaldi_fft_breadth_first_is_the_recursion(logn):
    """The batched-by-size FFT performs bit-for-bit the operations of Kaldi's recursion."""
    x = np.random.default_rng(logn).standard_normal((2, 1 << logn, 64)).astype(np.float32) * 1e3
    a = _kaldi_recursion(x[0], x[1], logn)
    b = kaldi_fft._breadth_first(x[0], x[1], logn)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()


def _kaldi_recursion(xr, xi, logn: int):
    """Literal transcription of Kaldi's `ComputeRecursive` (depth-first recursion), the oracle of
    `kaldi_fft._breadth_first`."""
    if logn == 0:
        return xr, xi
    if logn == 1:
        return (
            np.stack([xr[0] + xr[1], xr[0] - xr[1]]),
            np.stack([xi[0] + xi[1], xi[0] - xi[1]]),
        )
    if logn == 2:
        r0, r1, r2, r3 = xr[0], xr[1], xr[2], xr[3]
        i0, i1, i2, i3 = xi[0], xi[1], xi[2], xi[3]
        r0, r2 = r0 + r2, r0 - r2
        i0, i2 = i0 + i2, i0 - i2
        r1, r3 = r1 + r3, r1 - r3
        i1, i3 = i1 + i3, i1 - i3
        r0, r1 = r0 + r1, r0 - r1
        i0, i1 = i0 + i1, i0 - i1
        r2, i3, i2, r3 = r2 + i3, i2 + r3, i2 - r3, r2 - i3
        return np.stack([r0, r1, r2, r3]), np.stack([i0, i1, i2, i3])
    m = 1 << logn
    m2, m4, m8 = m // 2, m // 4, m // 8
    # Step 1: length-m2 butterflies.
    a, b = xr[:m2], xr[m2:]
    xr = np.concatenate([a + b, a - b])
    a, b = xi[:m2], xi[m2:]
    xi = np.concatenate([a + b, a - b])
    # Step 2: the two odd quarters, multiplied by -i.
    ar, br = xr[m2 : m2 + m4], xr[m2 + m4 :]
    ai, bi = xi[m2 : m2 + m4], xi[m2 + m4 :]
    ar, bi, ai, br = ar + bi, ai + br, ai - br, ar - bi
    # Steps 3 & 4: twiddles on entries 1 .. m4-1 of both quarters.
    sq = np.float32(np.sqrt(0.5))
    r1, i1, r2, i2 = ar[1:], ai[1:], br[1:], bi[1:]
    sp_r1, sp_i1 = sq * (r1 + i1), sq * (i1 - r1)
    sp_r2, sp_i2 = sq * (i2 - r2), -sq * (r2 + i2)
    if logn >= 4:
        cn, spcn, smcn, c3n, spc3n, smc3n = (
            kaldi_fft._bcast(t, r1) for t in kaldi_fft._tables(logn)
        )
        t2 = cn * (r1 + i1)
        g_i1 = spcn * r1 + t2
        g_r1 = smcn * i1 + t2
        t2 = c3n * (r2 + i2)
        g_i2 = spc3n * r2 + t2
        g_r2 = smc3n * i2 + t2
        special = kaldi_fft._bcast(np.arange(1, m4) == m8, r1)
        r1, i1 = np.where(special, sp_r1, g_r1), np.where(special, sp_i1, g_i1)
        r2, i2 = np.where(special, sp_r2, g_r2), np.where(special, sp_i2, g_i2)
    else:  # logn == 3: the only entry is n = m8
        r1, i1, r2, i2 = sp_r1, sp_i1, sp_r2, sp_i2
    ar, ai = np.concatenate([ar[:1], r1]), np.concatenate([ai[:1], i1])
    br, bi = np.concatenate([br[:1], r2]), np.concatenate([bi[:1], i2])
    # Recurse on the even half and the two odd quarters.
    er, ei = _kaldi_recursion(xr[:m2], xi[:m2], logn - 1)
    ar, ai = _kaldi_recursion(ar, ai, logn - 2)
    br, bi = _kaldi_recursion(br, bi, logn - 2)
    return np.concatenate([er, ar, br]), np.concatenate([ei, ai, bi])


@pytest.fixture(scope="module")
def fixture_models(kaldi_fixtures):
    """(model, rate) -> (Extractor, x-vectors of Kaldi's prepared features), loaded on first use;
    one extractor per model, so our features (same voiced-frame counts) reuse its jit shapes."""

    def load(model, rate):
        nnet = Nnet.read(str(kaldi_fixtures / "nnet3" / model / "final.raw"))
        ex = Extractor(*nnet3_to_flax(nnet))
        items = sorted(_text(kaldi_fixtures, f"prepared{rate}.txt").items())
        return ex, dict(extract_xvectors(ex.spec, None, iter(items), extractor=ex))

    cache = {}

    def get(model, rate):
        if model not in cache:
            cache[model] = load(model, rate)
        return cache[model]

    return get


@pytest.mark.parametrize(
    "model,rate",
    [pytest.param("full", "16k", marks=pytest.mark.slow), ("small", "16k"), ("variant8k", "8k")],
)
@pytest.mark.parametrize("fft_impl", ["kaldi", "xla"])
def test_xvectors_of_our_features_match_kaldi_features(
    kaldi_fixtures, fixture_models, model, rate, fft_impl
):
    """What the FFT path changes downstream: x-vectors of the fixture models from our prepared
    features (either FFT) are within 1 - cosine <= 1e-6 of those from Kaldi's own prepared
    features (measured: <= 1e-11 with the exact FFT, <= 3e-10 with XLA's; see
    benchmarks/bench_fft_exactness.py), with the same voiced frames."""
    fx = kaldi_fixtures
    kaldi_feats = _text(fx, f"prepared{rate}.txt")
    utts = U16 if rate == "16k" else U8
    opts = MfccOptions.from_config_file(str(fx / "features" / f"mfcc{rate}.conf"))
    vopts = VadOptions.from_config_file(str(fx / "features" / "vad.conf"))
    wav, lens = _load(fx, utts)
    feats, counts = prepare_feats(jnp.asarray(wav), jnp.asarray(lens), opts, vopts,
                                  fft_impl=fft_impl)  # fmt: skip
    ours = {u: np.asarray(feats)[i, : counts[i]] for i, u in enumerate(utts) if u in kaldi_feats}
    assert {u: len(x) for u, x in ours.items()} == {u: len(x) for u, x in kaldi_feats.items()}
    ex, ref = fixture_models(model, rate)
    got = dict(extract_xvectors(ex.spec, None, iter(sorted(ours.items())), extractor=ex))
    for u, r in ref.items():
        a, b = got[u].astype(np.float64), r.astype(np.float64)
        assert 1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) <= 1e-6, u


def test_fft_impl_auto_and_bad_names():
    """ "auto" is XLA's path, the faster on every backend (on CPU since its blocked form; see
    benchmarks/bench_features.py); an unknown name is a clear error."""
    assert resolve_fft_impl("auto") == "xla"
    assert resolve_fft_impl("xla") == "xla"
    with pytest.raises(XvjaxError, match="fft_impl must be 'kaldi', 'xla' or 'auto'"):
        compute_mfcc(jnp.zeros((1, 4000)), jnp.asarray([4000]), MfccOptions(dither=0.0),
                     fft_impl="fast")  # fmt: skip
