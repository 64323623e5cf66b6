"""x-vector extraction with the semantics of Kaldi's `nnet3-xvector-compute`, batched.

Per utterance of `num_rows` frames (src/nnet3bin/nnet3-xvector-compute.cc):
- zero rows: error; `num_rows < min_chunk_size` without `pad_input`: error;
- chunk = num_rows if `chunk_size == -1` (or `chunk_size > num_rows`), else chunk_size;
  chunk k covers rows `[k*chunk, k*chunk + offset)`, `offset = min(chunk, num_rows - k*chunk)`
  (the last chunk is not shifted back);
- a chunk with `offset < min_chunk_size` is skipped without `pad_input`, else padded to
  `min_chunk_size` by repeating its first row `(min - offset) // 2` times before it and its last
  row after it;
- the x-vector is the average of the chunks' outputs weighted by their un-padded `offset`.

Which node is computed (`extraction_node`): Kaldi computes the network's output node named
`output`; recipes point it at the embedding with `nnet3-copy --nnet-config=extract.config
final.raw - |` (`output-node name=output input=tdnn6.affine`). A Kaldi nnet3 model (file or pipe)
is used the same way. An xvjax model dir is a training checkpoint whose `output` is normally the
speaker classifier (a log-softmax): for it the rule is its `output` node unless that is the
classifier, in which case the x-vector, i.e. the first node with parameters after statistics
pooling (`tdnn6.affine` in Kaldi's xconfig, what extract.config names). `--output-node` overrides
both.

Batching: chunks are grouped into length buckets (`bucket_length`: 4 per octave) and batches of
`rows` chunks (a power of two limited by `max_batch_frames`; 1, 4, 16, ... for a partial batch),
right-padded with zeros and masked exactly (`num_frames`), so the number of jit compilations
stays small (logged) and padding does not change the result beyond float rounding. With several
local devices the batches go to them in turn (each batch whole on one device, so a vector does
not depend on the number of devices, nor on which other utterances share its batch).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator

import jax
import numpy as np
from tqdm import tqdm

from xvjax.errors import XvjaxError
from xvjax.features.options import frontend_differences, read_frontend_conf
from xvjax.model.spec import ModelSpec
from xvjax.model.xvector import XVector

log = logging.getLogger("xvjax")


@dataclasses.dataclass(frozen=True)
class Chunk:
    start: int  # first row of the utterance in this chunk
    length: int  # un-padded rows (the averaging weight)
    pad_left: int
    pad_right: int

    @property
    def total(self) -> int:
        return self.pad_left + self.length + self.pad_right


_CLASSIFIER_OPS = ("log_softmax", "softmax")


def embedding_node(spec: ModelSpec) -> str:
    """The x-vector node: the first node with parameters after statistics pooling."""
    levels = spec.levels()
    for n in spec.nodes:
        if levels[n.name] == "utt" and n.op in ("affine", "linear"):
            return n.name
    raise XvjaxError("the model has no affine layer after statistics pooling (no x-vector node)")


def extraction_node(spec: ModelSpec, model_dir: bool, requested: str = "") -> str:
    """The node nnet3-xvector-compute computes (see the module docstring): `requested` if given,
    else `output` (Kaldi), except that for an xvjax model dir whose `output` is the classifier
    the x-vector node (`embedding_node`). Raises XvjaxError for unknown nodes."""
    if requested:
        if requested not in [o.name for o in spec.outputs] + spec.node_names():
            raise XvjaxError(f"the model has no node '{requested}'")
        return requested
    if "output" not in [o.name for o in spec.outputs]:
        if model_dir:
            return embedding_node(spec)
        raise XvjaxError("the model has no output node named 'output' (use --output-node)")
    if model_dir and spec.node(spec.resolve("output")).op in _CLASSIFIER_OPS:
        return embedding_node(spec)
    return "output"


def check_frontend(spec: ModelSpec, feats_dir: str) -> list[str]:
    """Warns, and returns the differences, when the features of a data dir were made with other
    front-end options (its conf/) than the network was trained on (`spec.frontend`); nothing is
    compared when either side has no record."""
    used = read_frontend_conf(feats_dir)
    if not spec.frontend or not used:
        return []
    changed = frontend_differences(spec.frontend, used)
    if changed:
        log.warning(
            "the features in %s were made with other options than the model was trained on: %s",
            feats_dir, "; ".join(changed),
        )  # fmt: skip
    return changed


def plan_chunks(
    num_rows: int, chunk_size: int = -1, min_chunk_size: int = 100, pad_input: bool = True
) -> list[Chunk]:
    """Kaldi's chunking of one utterance; raises ValueError with Kaldi's reason when it fails."""
    if num_rows == 0:
        raise ValueError("zero-length utterance")
    if not pad_input and num_rows < min_chunk_size:
        raise ValueError(
            f"minimum chunk size of {min_chunk_size} is greater than the number of rows "
            f"({num_rows}) and --pad-input=false"
        )
    this_chunk = num_rows if chunk_size <= 0 or num_rows < chunk_size else chunk_size
    chunks = []
    for k in range(math.ceil(num_rows / this_chunk)):
        offset = min(this_chunk, num_rows - k * this_chunk)
        if offset < min_chunk_size:
            if not pad_input:
                continue
            left = (min_chunk_size - offset) // 2
            chunks.append(Chunk(k * this_chunk, offset, left, min_chunk_size - offset - left))
        else:
            chunks.append(Chunk(k * this_chunk, offset, 0, 0))
    if not chunks:
        raise ValueError("no chunk reaches --min-chunk-size")
    return chunks


def chunk_features(feats: np.ndarray, c: Chunk) -> np.ndarray:
    """Rows of chunk `c`, edge-padded as nnet3-xvector-compute pads them. (total, dim)."""
    sub = feats[c.start : c.start + c.length]
    if not (c.pad_left or c.pad_right):
        return sub
    return np.concatenate(
        [np.repeat(sub[:1], c.pad_left, 0), sub, np.repeat(sub[-1:], c.pad_right, 0)], 0
    )


def bucket_length(n: int, minimum: int = 16) -> int:
    """Smallest ladder value >= n: 16, 24, 32, 48, then 2^k * (1, 1.25, 1.5, 1.75) from 64.

    At most 12.5% padding above 64 frames and 4 buckets per octave of chunk length.
    """
    b = minimum
    while b < n:
        if b < 64:
            b = b + b // 2 if (b & (b - 1)) == 0 else b + b // 3
        else:
            octave = 1 << (b.bit_length() - 1)
            b += octave // 4
    return b


class Skip(str):
    """Why an utterance was skipped: the one-line reason passed to `on_error` (a str), with a
    `kind` for summaries ("wrong feature dimension", "too short", "NaN/inf features", ...)."""

    kind: str

    def __new__(cls, kind: str, reason: str) -> Skip:
        obj = super().__new__(cls, reason)
        obj.kind = kind
        return obj


def _pow2_floor(n: int) -> int:
    return 1 << (max(1, n).bit_length() - 1)


@functools.lru_cache(maxsize=8)
def _apply_fn(spec: ModelSpec, output_node: str) -> Callable:
    """The jitted forward of `spec` to `output_node`, shared by every Extractor of an equal spec:
    models that differ only in their weights (fine-tuning runs, dev evaluations) reuse its
    compilations."""
    model = XVector(spec)
    return jax.jit(lambda v, x, n: model.apply(v, x, output_node=output_node, num_frames=n))


class Extractor:
    """Runs the network on batches of variable-length chunks with bounded compilations."""

    def __init__(
        self,
        spec: ModelSpec,
        variables: dict,
        output_node: str = "tdnn6.affine",
        batch_size: int = 64,
        max_batch_frames: int = 64 * 400,
        devices=None,
    ):
        """`devices`: the devices a batch is split over (default: this process's own)."""
        target = spec.resolve(output_node)
        if spec.levels()[target] != "utt":
            raise XvjaxError(
                f"output node '{output_node}' is frame-level; nnet3-xvector-compute needs a node "
                "after statistics pooling (e.g. tdnn6.affine or output)"
            )
        self.spec = spec
        self.output_node = output_node
        self.dim = spec.output_dim(output_node)
        self.batch_size = max(1, batch_size)
        self.max_batch_frames = max_batch_frames
        self.min_frames = spec.min_input_frames(output_node)
        self.devices = list(devices) if devices is not None else jax.local_devices()
        self.variables = variables
        self._fn = _apply_fn(spec, output_node)
        self.shapes: set[tuple[int, int]] = set()

    @property
    def variables(self):
        return self._copies[0]

    @variables.setter
    def variables(self, variables) -> None:
        """New weights for the same jitted function (one copy per device)."""
        self._copies = [jax.device_put(variables, d) for d in self.devices]

    def rows_for(self, length: int) -> int:
        return min(_pow2_floor(self.batch_size), _pow2_floor(self.max_batch_frames // length))

    def run(self, chunks: list[np.ndarray]) -> np.ndarray:
        """Outputs for chunks (each (frames, feat_dim)), in order. Returns (num_chunks, dim)."""
        out = np.zeros((len(chunks), self.dim), np.float32)
        by_bucket: dict[int, list[int]] = {}
        for i, c in enumerate(chunks):
            by_bucket.setdefault(bucket_length(len(c)), []).append(i)
        feat_dim = self.spec.input_dim
        pending = []
        for length, idx in sorted(by_bucket.items()):
            rows = self.rows_for(length)
            for b in range(0, len(idx), rows):
                part = idx[b : b + rows]
                # A partial batch is padded to 1, 4, 16, ... rows: few batch sizes per length.
                n = 1
                while n < len(part):
                    n *= 4
                n = min(n, rows)
                x = np.zeros((n, length, feat_dim), np.float32)
                nf = np.full((n,), length, np.int32)
                for r, i in enumerate(part):
                    x[r, : len(chunks[i])] = chunks[i]
                    nf[r] = len(chunks[i])
                self.shapes.add((n, length))
                # Dispatch asynchronously; the host prepares the next batch meanwhile.
                d = len(pending) % len(self.devices)  # batches to the devices in turn
                x, nf = jax.device_put((x, nf), self.devices[d])
                pending.append((part, self._fn(self._copies[d], x, nf)))
        for part, y in pending:
            out[part] = np.asarray(y)[: len(part)]
        return out


def extract_xvectors(
    spec: ModelSpec,
    variables: dict,
    feats: Iterable[tuple[str, np.ndarray]],
    chunk_size: int = -1,
    min_chunk_size: int = 100,
    pad_input: bool = True,
    output_node: str = "tdnn6.affine",
    batch_size: int = 64,
    max_batch_frames: int = 64 * 400,
    window_frames: int = 500_000,
    on_error: Callable[[str, str], None] | None = None,
    extractor: Extractor | None = None,
    progress: bool = False,
) -> Iterator[tuple[str, np.ndarray]]:
    """Yields (utt, x-vector float32 (dim,)) in input order, like `nnet3-xvector-compute`.

    Utterances that cannot be processed (wrong feature dimension, zero length, too short without
    padding, shorter than the network's context after padding, NaN or infinite features or
    output) are reported to `on_error(utt, reason)` (default: a warning; `reason` is a `Skip`,
    whose `kind` groups them) and skipped. Utterances are read in windows of about
    `window_frames` frames whose chunks are batched together. Pass one `extractor` for all calls
    with a model so its jit shapes are reused; its spec and weights are then used (`spec`,
    `variables` and the batch options are ignored).
    """
    ex = extractor or Extractor(spec, variables, output_node, batch_size, max_batch_frames)
    if ex.output_node != output_node:
        raise XvjaxError(f"extractor computes '{ex.output_node}', not '{output_node}'")
    if on_error is None:

        def on_error(utt: str, reason: str) -> None:
            log.warning("%s: %s", utt, reason)

    bar = None
    if progress:
        bar = tqdm(unit="utt", desc="x-vectors", disable=None, leave=False)

    def flush(window):
        chunk_feats = [cf for _, _, plan in window for cf in plan[1]]
        outs = ex.run(chunk_feats) if chunk_feats else np.zeros((0, ex.dim), np.float32)
        pos = 0
        for utt, _, (chunks, cfs) in window:
            y = outs[pos : pos + len(cfs)]
            pos += len(cfs)
            w = np.array([c.length for c in chunks], np.float64)
            vec = (w @ y.astype(np.float64) / w.sum()).astype(np.float32)
            if not np.isfinite(vec).all():
                on_error(
                    utt, Skip("NaN/inf x-vector", "the network's output has NaN or inf values")
                )
                continue
            yield utt, vec

    window: list = []
    frames = 0
    for utt, mat in feats:
        mat = np.asarray(mat, np.float32)
        if mat.ndim != 2 or (mat.shape[0] and mat.shape[1] != ex.spec.input_dim):
            shape = f"features have shape {mat.shape}; the model wants {ex.spec.input_dim} columns"
            on_error(utt, Skip("wrong feature dimension", shape))
            continue
        if not np.isfinite(mat).all():
            bad = int(np.count_nonzero(~np.isfinite(mat).all(axis=1)))
            values = f"features have NaN or infinite values ({bad} of {mat.shape[0]} frames)"
            on_error(utt, Skip("NaN/inf features", values))
            continue
        try:
            chunks = plan_chunks(mat.shape[0], chunk_size, min_chunk_size, pad_input)
        except ValueError as e:
            on_error(utt, Skip("empty" if mat.shape[0] == 0 else "too short", str(e)))
            continue
        short = [c for c in chunks if c.total < ex.min_frames]
        if short:
            on_error(
                utt,
                Skip(
                    "too short for the network's context",
                    f"not enough context: a chunk of {short[0].total} frames, the network needs "
                    f"at least {ex.min_frames} (a larger --min-chunk-size pads short chunks up to it)",
                ),
            )
            continue
        cfs = [chunk_features(mat, c) for c in chunks]
        window.append((utt, mat.shape[0], (chunks, cfs)))
        frames += sum(len(c) for c in cfs)
        if frames >= window_frames:
            yield from flush(window)
            if bar is not None:
                bar.update(len(window))
            window, frames = [], 0
    if window:
        yield from flush(window)
        if bar is not None:
            bar.update(len(window))
    if bar is not None:
        bar.close()


def extract_with_stats(
    spec: ModelSpec, variables: dict, feats: Iterable[tuple[str, np.ndarray]], **kwargs
) -> tuple[list[tuple[str, np.ndarray]], dict]:
    """Convenience for tests/benchmarks: all results plus counts and timing."""
    errors: list[tuple[str, str]] = []
    t0 = time.perf_counter()
    out = list(
        extract_xvectors(
            spec, variables, feats, on_error=lambda u, r: errors.append((u, r)), **kwargs
        )
    )
    return out, {"errors": errors, "seconds": time.perf_counter() - t0}
