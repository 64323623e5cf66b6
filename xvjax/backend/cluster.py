"""Agglomerative clustering (AHC) of x-vectors by PLDA or cosine similarity: exact average linkage
in blocks (jnp), complete/single linkage on a dense matrix (scipy), cuts, and clustering metrics.

Similarity. Both scorers are an inner product plus per-vector terms (as in `backend.scoring`):
- cosine: s(i, j) = x_i . x_j / (|x_i| |x_j|);
- PLDA: Kaldi's `LogLikelihoodRatio` of x_j against x_i taken as a one-utterance enrolment (n = 1
  on both sides, vectors through `plda_transform`), which is symmetric. With u the transformed
  vectors and psi the PLDA's between-class variances,
      s(i, j) = sum_k K_k u_ik u_jk + e_i + e_j + c,    K = psi / (2 psi + 1),
      e_i = sum_k q_k u_ik^2,  q = -psi^2 / (2 (1 + psi) (2 psi + 1)),
      c = 1/2 sum_k log((1 + psi_k)^2 / (2 psi_k + 1)).
So s(i, j) = phi_i . phi_j + e_i + e_j + c (`PairFeatures`), and the average-linkage similarity of
two disjoint clusters A, B (the mean of s over A x B) is the same form in the cluster means:
      S(A, B) = mean_A(phi) . mean_B(phi) + mean_A(e) + mean_B(e) + c.
Average linkage needs only (sum phi, sum e, size) per cluster: O(N D) memory, never N x N.

Exact average linkage (`average_linkage`), by reciprocal nearest neighbours. Average linkage is
reducible: S(A u B, X) is a weighted mean of S(A, X) and S(B, X), never above both. Hence every
pair of clusters that are each other's nearest neighbour is merged, at that similarity, in the
sequential most-similar-pair-first hierarchy, and all such pairs can be merged at once (the
argument behind Murtagh's RNN and the nearest-neighbour-chain algorithms). Each round merges every
reciprocal pair; only the new clusters and the clusters whose neighbour was merged need a new
neighbour (for any other X the old one is still the nearest: its similarity to X is unchanged, the
new clusters' are no higher). Those are looked up first among short candidate lists kept from
earlier scans, which prove their answer or send the cluster to a scan (`average_linkage`). A scan
computes tiles of (ROW_BLOCK x `block_size`) cluster similarities, one GEMM and a top-k on the
device; one tile exists at a time. The merges and their similarities are those of scipy's
`linkage(method="average")` on the dense matrix (tested in float64). What is not exact: the order
of merges at tied similarities, and with `dtype=float32` (the default) scans rank clusters by
float32 similarities, so two candidates within float32 rounding (~1e-6 relative) of each other may
be taken in the other order; merge similarities are recomputed in float64. With a stopping
threshold t, a cluster whose best similarity is below t can never merge again (similarities only
fall) and leaves the run, so it stops early and gets cheaper as it goes. Cost: the first round
scans all N^2 pairs (O(N^2 D) flops); on speaker-like data all later rounds together scan ~0.1 N^2
(`benchmarks/bench_cluster.py` prints it).

Complete and single linkage are not functions of cluster sums; `dense_linkage` runs scipy on the
materialised matrix (N up to `DENSE_LIMIT`).

    labels = ahc(x, "plda", plda_backend=backend, threshold=0.0)       # (N,) cluster ids
    d = dendrogram(x_src, "plda", plda_backend=backend)                  # full hierarchy
    choice = choose_threshold(d, spk_ids_src)                            # best cut on a labelled set
    labels = cut(d, num_clusters=500)
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.cluster.hierarchy import linkage as scipy_linkage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from xvjax.backend.linalg import check_finite
from xvjax.backend.plda import Plda, plda_transform
from xvjax.backend.scoring import x64_scope
from xvjax.backend.system import PldaBackend
from xvjax.errors import XvjaxError

log = logging.getLogger("xvjax")

__all__ = [
    "SIMILARITIES",
    "LINKAGES",
    "DENSE_LIMIT",
    "PairFeatures",
    "pair_features",
    "plda_pair_features",
    "cosine_pair_features",
    "similarity_matrix",
    "Dendrogram",
    "average_linkage",
    "dense_linkage",
    "from_linkage_matrix",
    "hierarchy",
    "dendrogram",
    "cut",
    "flat_clusters",
    "ahc",
    "purity_coverage",
    "ClusteringCurve",
    "clustering_curve",
    "ThresholdChoice",
    "choose_threshold",
]

SIMILARITIES = ("plda", "cosine")
LINKAGES = ("average", "complete", "single")
# Largest N for the dense (scipy) linkages: the condensed float64 matrix is 8 N^2 / 2 bytes (1.6 GB).
DENSE_LIMIT = 20000


# ----------------------------------------------------------------------------- similarity
class PairFeatures(NamedTuple):
    """A symmetric similarity s(i, j) = vec_i . vec_j + bias_i + bias_j + const (i != j).

    vec: (N, D) float64; bias: (N,) float64; const: float.
    """

    vec: np.ndarray
    bias: np.ndarray
    const: float


def plda_pair_features(plda: Plda, transformed: np.ndarray) -> PairFeatures:
    """The PLDA LLR between single vectors (n = 1 both sides) as `PairFeatures`.

    transformed: (N, D) vectors through `plda_transform(plda, x)` (n = 1).
    """
    u = np.asarray(transformed, dtype=np.float64)
    psi = np.asarray(plda.psi, dtype=np.float64)
    k = psi / (2.0 * psi + 1.0)
    q = -(psi**2) / (2.0 * (1.0 + psi) * (2.0 * psi + 1.0))
    const = 0.5 * float(np.sum(2.0 * np.log1p(psi) - np.log1p(2.0 * psi)))
    return PairFeatures(u * np.sqrt(k), (u * u) @ q, const)


def cosine_pair_features(x: np.ndarray) -> PairFeatures:
    """Cosine similarity as `PairFeatures` (zero vectors have similarity 0 with everything)."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return PairFeatures(x / np.where(norm == 0.0, 1.0, norm), np.zeros(len(x)), 0.0)


def pair_features(
    vectors: np.ndarray, similarity: str = "cosine", plda_backend: PldaBackend | None = None
) -> PairFeatures:
    """The similarity of (N, D) raw x-vectors for clustering.

    "plda": the LLR of `plda_backend` between single x-vectors (projected as the backend scores
    them: subtract mean | LDA | length norm, then `plda_transform`). "cosine": cosine similarity
    of the vectors, or of their projection through `plda_backend` (mean, LDA, length norm) if one
    is given.
    """
    if similarity not in SIMILARITIES:
        raise XvjaxError(f"unknown similarity '{similarity}' (plda or cosine)")
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise XvjaxError(f"clustering needs a non-empty (N, D) matrix of vectors, got {x.shape}")
    check_finite(x)
    if plda_backend is not None:
        if plda_backend.mean.shape[0] != x.shape[1]:
            raise XvjaxError(
                f"vectors have dimension {x.shape[1]}, the backend expects "
                f"{plda_backend.mean.shape[0]}"
            )
        x = plda_backend.project(x)
    if similarity == "cosine":
        return cosine_pair_features(x)
    if plda_backend is None:
        raise XvjaxError("similarity 'plda' needs a PLDA backend (plda_backend=...)")
    u, _ = plda_transform(plda_backend.plda, x)
    return plda_pair_features(plda_backend.plda, u)


def similarity_matrix(features: PairFeatures) -> np.ndarray:
    """The dense (N, N) float64 similarity matrix (small N: tests, the dense linkages)."""
    f = features
    s = f.vec @ f.vec.T + f.bias[:, None] + f.bias[None, :] + f.const
    return 0.5 * (s + s.T)


# ----------------------------------------------------------------------------- dendrogram
class Dendrogram(NamedTuple):
    """The merges of an AHC run, in the order they were made (children before parents).

    A cluster is named by its smallest point index. first (M,) int64, second (M,) int64: the
    names of the two clusters merged (first < second, so the merged cluster is named `first`);
    similarity (M,) float64: their linkage similarity; size (M,) int64: points in the merged
    cluster; num_points: N. M = N - 1 for a full hierarchy, fewer when built down to a threshold.
    """

    first: np.ndarray
    second: np.ndarray
    similarity: np.ndarray
    size: np.ndarray
    num_points: int

    @property
    def num_merges(self) -> int:
        return len(self.first)


def _empty_dendrogram(n: int) -> Dendrogram:
    z = np.zeros(0, np.int64)
    return Dendrogram(z, z.copy(), np.zeros(0), z.copy(), n)


@jax.jit
def _topk_in_tile(rows, row_cols, cols, col_bias, col0, best_val, best_col):
    """The k most similar other columns of each row among one tile, merged into the running k.

    rows (R, D) cluster means of the rows, row_cols (R,) int32 their own columns (-1: padding);
    cols (C, D), col_bias (C,) one tile (bias -inf: dead or padded column), col0 its first
    column; best_val (R, k), best_col (R, k) int32: the similarities (without the row's own
    bias) and columns found so far, decreasing. Ties keep the smaller column.
    """
    k = best_val.shape[1]
    s = rows @ cols.T + col_bias[None, :]
    ids = col0 + jnp.arange(cols.shape[0], dtype=row_cols.dtype)
    s = jnp.where(ids[None, :] == row_cols[:, None], -jnp.inf, s)
    tile_val, j = jax.lax.top_k(s, k)
    val = jnp.concatenate([best_val, tile_val], axis=1)  # earlier columns first: kept on ties
    col = jnp.concatenate([best_col, ids[j]], axis=1)
    val, order = jax.lax.top_k(val, k)
    return val, jnp.take_along_axis(col, order, axis=1)


# Rows per tile: a GEMM of 256 x block_size is as efficient per similarity as a square one here,
# and one tile shape means one compilation per run.
ROW_BLOCK = 256


def _padded(a: np.ndarray, width: int, value) -> np.ndarray:
    if len(a) == width:
        return a
    out = np.full((width, *a.shape[1:]), value, a.dtype)
    out[: len(a)] = a
    return out


class _Centroids:
    """Cluster means of phi and of the bias, one column per cluster of the run, kept on the host
    (updates are row writes) and copied to the device in column tiles once per round. Dead
    columns have bias -inf; compacted when half the columns are dead."""

    def __init__(self, sums, bsum, count, alive, block: int, dtype):
        self.block, self.dtype = block, np.dtype(dtype)
        self.col_of = np.full(len(sums), -1, np.int64)
        self.build(sums, bsum, count, alive)

    def build(self, sums, bsum, count, alive) -> None:
        self.cent = (sums[alive] / count[alive, None]).astype(self.dtype)
        self.bias = (bsum[alive] / count[alive]).astype(self.dtype)
        self.slot_of_col = alive.copy()
        self.col_of[:] = -1
        self.col_of[alive] = np.arange(len(alive))
        self.live = len(alive)
        self._tiles = None

    @property
    def width(self) -> int:
        return len(self.slot_of_col)

    def nearest(self, slots: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k most similar other live clusters of each of `slots` -> (similarities without
        the row's own bias and the constant (R, k) float64, decreasing, -inf where none; their
        names (R, k) int64, -1 where none)."""
        if self._tiles is None:
            self._tiles = [
                (
                    jnp.asarray(_padded(self.cent[c0 : c0 + self.block], self.block, 0)),
                    jnp.asarray(_padded(self.bias[c0 : c0 + self.block], self.block, -np.inf)),
                    np.int32(c0),
                )
                for c0 in range(0, self.width, self.block)
            ]
        val = np.empty((len(slots), k))
        col = np.empty((len(slots), k), np.int64)
        start_val = jnp.full((ROW_BLOCK, k), -jnp.inf, self.dtype)
        start_col = jnp.full((ROW_BLOCK, k), -1, jnp.int32)
        for r0 in range(0, len(slots), ROW_BLOCK):
            own = self.col_of[slots[r0 : r0 + ROW_BLOCK]]
            rows = jnp.asarray(_padded(self.cent[own], ROW_BLOCK, 0))
            cols = jnp.asarray(_padded(own.astype(np.int32), ROW_BLOCK, -1))
            best = start_val, start_col
            for tile, tile_bias, c0 in self._tiles:
                best = _topk_in_tile(rows, cols, tile, tile_bias, c0, *best)
            val[r0 : r0 + len(own)] = np.asarray(best[0], np.float64)[: len(own)]
            col[r0 : r0 + len(own)] = np.asarray(best[1])[: len(own)]
        return val, np.where(col >= 0, self.slot_of_col[np.maximum(col, 0)], -1)

    def set(self, slots: np.ndarray, cent: np.ndarray, bias: np.ndarray) -> None:
        """New means of clusters `slots`."""
        self.cent[self.col_of[slots]] = cent
        self.bias[self.col_of[slots]] = bias
        self._tiles = None

    def remove(self, slots: np.ndarray) -> None:
        if len(slots):
            self.bias[self.col_of[slots]] = -np.inf
            self.col_of[slots] = -1
            self.live -= len(slots)
            self._tiles = None


class _Clusters:
    """The clusters of an average-linkage run, named by their smallest point: sums of phi and of
    the bias, sizes, and each point's current cluster (union-find, compressed every round)."""

    def __init__(self, features: PairFeatures):
        self.sums = np.asarray(features.vec, np.float64).copy()
        self.bsum = np.asarray(features.bias, np.float64).copy()
        self.count = np.ones(len(self.sums), np.int64)
        self.const = float(features.const)
        self.parent = np.arange(len(self.sums))

    def mean(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.sums[c] / self.count[c, None], self.bsum[c] / self.count[c]

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Average-linkage similarity of clusters a[i] and b[i] (distinct), float64."""
        (ma, ea), (mb, eb) = self.mean(a), self.mean(b)
        return np.einsum("ij,ij->i", ma, mb) + ea + eb + self.const

    def merge(self, first: np.ndarray, second: np.ndarray) -> None:
        self.sums[first] += self.sums[second]
        self.bsum[first] += self.bsum[second]
        self.count[first] += self.count[second]
        self.parent[second] = first
        while True:  # path compression: every point names its cluster directly
            grand = self.parent[self.parent]
            if np.array_equal(grand, self.parent):
                break
            self.parent = grand

    def find(self, names: np.ndarray) -> np.ndarray:
        """The current cluster of each (former) cluster name (-1 stays -1)."""
        return np.where(names >= 0, self.parent[np.maximum(names, 0)], -1)


def _check_candidates(cl: _Clusters, is_alive, rows, names, bound, k: int, chunk: int = 4096):
    """Nearest clusters of `rows` from candidate lists, where that is provably right.

    names (R, m): former names of each row's candidates (-1: none); bound (R,): no cluster
    outside the candidates is more similar to the row. Scores the clusters now holding the
    candidates exactly -> (ok (R,) bool: the best reaches the bound, so it is the nearest; the k
    best candidates (R, k) names and similarities (float64, decreasing; -1 / -inf pad); the new
    bound: the old one or the best candidate dropped from the list, whichever is higher).
    """
    r, m = names.shape
    cur = cl.find(names)
    cur = np.where((cur >= 0) & is_alive[np.maximum(cur, 0)] & (cur != rows[:, None]), cur, -1)
    srt = np.sort(cur, axis=1)  # a cluster holding two candidates is scored once
    cur = np.where(np.concatenate([np.ones((r, 1), bool), srt[:, 1:] != srt[:, :-1]], 1), srt, -1)
    sims = np.full((r, m), -np.inf)
    for r0 in range(0, r, chunk):
        c = cur[r0 : r0 + chunk]
        i, j = np.nonzero(c >= 0)
        sims[r0 + i, j] = cl.similarity(rows[r0 + i], c[i, j])
    order = np.lexsort((cur, -sims), axis=1)
    sims = np.take_along_axis(sims, order, 1)
    cur = np.take_along_axis(cur, order, 1)
    new_bound = bound if m <= k else np.maximum(bound, sims[:, k])
    if m < k:
        sims = np.pad(sims, ((0, 0), (0, k - m)), constant_values=-np.inf)
        cur = np.pad(cur, ((0, 0), (0, k - m)), constant_values=-1)
    return sims[:, 0] >= bound, cur[:, :k], sims[:, :k], new_bound


def average_linkage(
    features: PairFeatures,
    threshold: float | None = None,
    *,
    block_size: int = 2048,
    dtype=np.float32,
    candidates: int = 8,
) -> Dendrogram:
    """Exact average-linkage AHC of N points (see the module docstring), never more than one
    (ROW_BLOCK x block_size) tile of similarities at a time.

    threshold: stop when no two clusters have an average similarity >= threshold (None: build
    the whole hierarchy, N - 1 merges). dtype: the GEMM precision (float32 or float64).

    Fewer scans: each cluster keeps the `candidates` most similar clusters of its last scan and
    a bound, the least of their similarities then: no other cluster was above it, and merges only
    average similarities, so none can rise above it since. When its neighbour merges, the
    clusters now holding its candidates are scored exactly (float64); if the best reaches the
    bound it is the nearest, else the cluster is scanned again. A new cluster A u B takes the
    candidates of A and B, with the size-weighted mean of their bounds (for any other Y,
    S(A u B, Y) = (n_A S(A, Y) + n_B S(B, Y)) / (n_A + n_B)).
    """
    n = len(features.vec)
    k = int(candidates)
    t = -np.inf if threshold is None else float(threshold)
    if block_size < 16:
        raise XvjaxError(f"block size must be at least 16, got {block_size}")
    if k < 1:
        raise XvjaxError(f"need at least one candidate per cluster, got {candidates}")
    if n < 2:
        return _empty_dendrogram(n)
    cl = _Clusters(features)
    cand = np.full((n, k), -1, np.int64)  # candidates (names then), most similar first
    nn_sim = np.full(n, -np.inf)  # similarity of the nearest, cand[:, 0]
    bound = np.full(n, -np.inf)  # no cluster outside the candidates is more similar
    is_alive = np.ones(n, bool)
    alive = np.arange(n)
    merges: list[tuple[np.ndarray, ...]] = []
    start = last_log = time.monotonic()
    rounds = num_merges = num_scanned = 0
    with x64_scope(dtype):
        cent = _Centroids(cl.sums, cl.bsum, cl.count, alive, block_size, dtype)
        scan, check = alive, alive[:0]
        check_names, check_bound = np.zeros((0, k), np.int64), np.zeros(0)
        while True:
            if check.size:
                ok, names, sims, new_bound = _check_candidates(
                    cl, is_alive, check, check_names, check_bound, k
                )
                good = check[ok]
                cand[good], nn_sim[good], bound[good] = names[ok], sims[ok, 0], new_bound[ok]
                scan = check[~ok]
            if scan.size:
                val, names = cent.nearest(scan, k)
                val += (cl.bsum[scan] / cl.count[scan] + cl.const)[:, None]
                cand[scan], nn_sim[scan], bound[scan] = names, val[:, 0], val[:, -1]
                num_scanned += scan.size * cent.live
            scanned_all = scan.size == alive.size
            if t > -np.inf:  # clusters that cannot reach t any more leave the run
                frozen = nn_sim[alive] < t
                if frozen.any():
                    cent.remove(alive[frozen])
                    is_alive[alive[frozen]] = False
                    alive = alive[~frozen]
            if alive.size < 2:
                break
            nn = cand[:, 0]
            partner = nn[alive]
            mutual = nn[np.maximum(partner, 0)] == alive
            first = alive[(partner > alive) & mutual & is_alive[np.maximum(partner, 0)]]
            if first.size == 0:
                if not scanned_all:  # cached neighbours may tie inconsistently: scan all
                    scan, check = alive, alive[:0]
                    continue
                # rounding made the neighbour relation cyclic: merge the most similar pair
                i = alive[int(np.argmax(nn_sim[alive]))]
                first, second = np.array([min(i, nn[i])]), np.array([max(i, nn[i])])
            else:
                second = nn[first]
            height = cl.similarity(first, second)  # exact, float64
            n_a, n_b = cl.count[first], cl.count[second]
            new_names = np.concatenate([cand[first], cand[second]], axis=1)
            new_bound = (n_a * bound[first] + n_b * bound[second]) / (n_a + n_b)
            cl.merge(first, second)
            merges.append((first, second, height, cl.count[first].copy()))
            num_merges += len(first)
            is_alive[second] = False
            alive = alive[is_alive[alive]]
            cent.remove(second)
            cent.set(first, *cl.mean(first))
            if cent.live < cent.width // 2:
                cent.build(cl.sums, cl.bsum, cl.count, alive)
            merged = np.zeros(n, bool)
            merged[first] = merged[second] = True
            new = np.zeros(n, bool)
            new[first] = True
            lost = alive[~new[alive] & merged[np.maximum(nn[alive], 0)]]  # neighbour merged
            check = np.concatenate([first, lost])
            old_names = np.pad(cand[lost], ((0, 0), (0, k)), constant_values=-1)
            check_names = np.concatenate([new_names, old_names])
            check_bound = np.concatenate([new_bound, bound[lost]])
            scan = alive[:0]
            rounds += 1
            if time.monotonic() - last_log > 10.0:
                last_log = time.monotonic()
                log.info(
                    "AHC round %d: %d clusters left, %d merges, %.0f s",
                    rounds,
                    alive.size,
                    num_merges,
                    last_log - start,
                )
    log.debug(
        "average linkage: %d merges in %d rounds, %.2f N^2 similarities scanned, %.1f s",
        num_merges,
        rounds,
        num_scanned / n / n,
        time.monotonic() - start,
    )
    if not merges:
        return _empty_dendrogram(n)
    first, second, height, size = (np.concatenate(parts) for parts in zip(*merges, strict=True))
    return Dendrogram(first, second, height, size, n)


def from_linkage_matrix(z: np.ndarray) -> Dendrogram:
    """A scipy linkage matrix (M, 4) whose distances are negated similarities -> `Dendrogram`."""
    z = np.asarray(z, np.float64)
    n = len(z) + 1
    name = np.concatenate([np.arange(n), np.zeros(len(z), np.int64)])
    first = np.empty(len(z), np.int64)
    second = np.empty(len(z), np.int64)
    for i, (a, b) in enumerate(z[:, :2].astype(np.int64)):
        first[i], second[i] = min(name[a], name[b]), max(name[a], name[b])
        name[n + i] = first[i]
    return Dendrogram(first, second, -z[:, 2], z[:, 3].astype(np.int64), n)


def dense_linkage(features: PairFeatures, method: str = "average") -> Dendrogram:
    """The whole hierarchy by scipy's `linkage` on the materialised similarities (condensed,
    float64, distance = -similarity): any of `LINKAGES`, for N <= `DENSE_LIMIT`."""
    if method not in LINKAGES:
        raise XvjaxError(f"unknown linkage '{method}' ({', '.join(LINKAGES)})")
    f = features
    n = len(f.vec)
    if n > DENSE_LIMIT:
        raise XvjaxError(
            f"{method} linkage needs the whole {n} x {n} score matrix (at most {DENSE_LIMIT} "
            "vectors); use average linkage, which runs in blocks"
        )
    if n < 2:
        return _empty_dendrogram(n)
    condensed = np.empty(n * (n - 1) // 2)
    pos = 0
    step = max(1, (1 << 24) // n)  # rows per block: ~16M similarities
    for r0 in range(0, n, step):
        rows = f.vec[r0 : r0 + step] @ f.vec.T + f.bias[r0 : r0 + step, None] + f.bias + f.const
        for i, row in enumerate(rows, r0):
            condensed[pos : pos + n - i - 1] = -row[i + 1 :]
            pos += n - i - 1
    return from_linkage_matrix(scipy_linkage(condensed, method=method))


def hierarchy(
    features: PairFeatures,
    linkage: str = "average",
    threshold: float | None = None,
    *,
    block_size: int = 2048,
    dtype=np.float32,
) -> Dendrogram:
    """The AHC hierarchy of N points with similarity `features`, down to `threshold` (None: all
    N - 1 merges). Average linkage runs blocked (`average_linkage`, any N); complete and single
    on the dense matrix (`dense_linkage`, N <= DENSE_LIMIT)."""
    if linkage not in LINKAGES:
        raise XvjaxError(f"unknown linkage '{linkage}' ({', '.join(LINKAGES)})")
    log.info(
        "AHC of %d vectors, %s linkage%s",
        len(features.vec),
        linkage,
        "" if threshold is None else f", down to similarity {threshold:g}",
    )
    if linkage == "average":
        return average_linkage(features, threshold, block_size=block_size, dtype=dtype)
    return dense_linkage(features, linkage)


def dendrogram(
    vectors: np.ndarray,
    similarity: str = "cosine",
    plda_backend: PldaBackend | None = None,
    linkage: str = "average",
    threshold: float | None = None,
    *,
    block_size: int = 2048,
    dtype=np.float32,
) -> Dendrogram:
    """The AHC hierarchy of (N, D) raw x-vectors by `similarity` (`pair_features`), down to
    `threshold` (None: all N - 1 merges), see `hierarchy`."""
    features = pair_features(vectors, similarity, plda_backend)
    return hierarchy(features, linkage, threshold, block_size=block_size, dtype=dtype)


def _monotone_similarity(d: Dendrogram) -> np.ndarray:
    """Merge similarities made non-increasing from children to parents (min with the children's),
    so any cut is a set of whole subtrees even where rounding inverted two merges."""
    eff = d.similarity.copy()
    last = {}  # cluster name -> similarity of the merge that formed it
    for m, (a, b) in enumerate(zip(d.first.tolist(), d.second.tolist(), strict=True)):
        e = min(eff[m], last.get(a, np.inf), last.get(b, np.inf))
        eff[m] = e
        last[a] = e
    return eff


def _cut_order(d: Dendrogram) -> tuple[np.ndarray, np.ndarray]:
    """(merge indices from the most to the least similar, children first; their similarities)."""
    eff = _monotone_similarity(d)
    order = np.lexsort((np.arange(d.num_merges), -eff))
    return order, eff[order]


def _components(n: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Cluster labels 0 .. K-1 (numbered in order of their first point) of N points joined by
    the merges (first[i], second[i])."""
    graph = coo_matrix((np.ones(len(first)), (first, second)), shape=(n, n))
    _, raw = connected_components(graph, directed=False)
    _, first_point, inverse = np.unique(raw, return_index=True, return_inverse=True)
    rank = np.empty(len(first_point), np.int64)
    rank[np.argsort(first_point)] = np.arange(len(first_point))
    return rank[inverse.reshape(-1)]


def cut(
    d: Dendrogram, threshold: float | None = None, num_clusters: int | None = None
) -> np.ndarray:
    """Flat clusters of a hierarchy -> (N,) int64 labels 0 .. K-1 (in order of first point).

    threshold: keep the merges with similarity >= threshold; num_clusters: keep the N - K most
    similar merges (exactly K clusters). Give exactly one.
    """
    if (threshold is None) == (num_clusters is None):
        raise XvjaxError("give exactly one of a similarity threshold and a number of clusters")
    n = d.num_points
    order, eff = _cut_order(d)
    if threshold is not None:
        keep = order[eff >= threshold]
    else:
        if not 1 <= num_clusters <= n:
            raise XvjaxError(f"number of clusters must be between 1 and {n}, got {num_clusters}")
        if n - num_clusters > d.num_merges:
            raise XvjaxError(
                f"the hierarchy stops at {n - d.num_merges} clusters (built down to a threshold); "
                f"cannot cut it to {num_clusters}"
            )
        keep = order[: n - num_clusters]
    return _components(n, d.first[keep], d.second[keep])


def flat_clusters(
    features: PairFeatures,
    threshold: float | None = None,
    num_clusters: int | None = None,
    linkage: str = "average",
    *,
    block_size: int = 2048,
    dtype=np.float32,
) -> np.ndarray:
    """AHC of N points with similarity `features` -> (N,) int64 labels 0 .. K-1, stopped at a
    similarity `threshold` or at `num_clusters` clusters (give exactly one)."""
    if (threshold is None) == (num_clusters is None):
        raise XvjaxError("give exactly one of a similarity threshold and a number of clusters")
    d = hierarchy(features, linkage, threshold, block_size=block_size, dtype=dtype)
    labels = cut(d, threshold, num_clusters)
    sizes = np.bincount(labels)
    log.info(
        "Clustered %d vectors into %d clusters (%d of them with 2 or more vectors, largest %d)",
        len(labels),
        len(sizes),
        int(np.sum(sizes >= 2)),
        int(sizes.max()),
    )
    return labels


def ahc(
    vectors: np.ndarray,
    similarity: str = "cosine",
    plda_backend: PldaBackend | None = None,
    threshold: float | None = None,
    num_clusters: int | None = None,
    linkage: str = "average",
    *,
    block_size: int = 2048,
    dtype=np.float32,
) -> np.ndarray:
    """Agglomerative clustering of (N, D) raw x-vectors -> (N,) int64 labels 0 .. K-1.

    Stops at a similarity `threshold` (merge while the best linkage similarity is >= it) or at
    `num_clusters` clusters; give exactly one. similarity "plda" (LLR of `plda_backend`) or
    "cosine" (of the backend's projection if a backend is given, see `pair_features`); linkage
    "average" (exact, blocked, any N), "complete" or "single" (dense, N <= DENSE_LIMIT).
    """
    features = pair_features(vectors, similarity, plda_backend)
    return flat_clusters(
        features, threshold, num_clusters, linkage, block_size=block_size, dtype=dtype
    )


# ----------------------------------------------------------------------------- metrics
def _codes(labels: Sequence) -> np.ndarray:
    return np.unique(np.asarray(labels).astype(str), return_inverse=True)[1].reshape(-1)


def purity_coverage(labels: Sequence, reference: Sequence) -> tuple[float, float]:
    """(purity, coverage) of a clustering against reference labels (e.g. true speakers), (N,) each.

    purity = sum over clusters of its largest speaker count / N (1: no cluster mixes speakers);
    coverage = sum over speakers of its largest cluster count / N (1: no speaker is split).
    """
    c, r = _codes(labels), _codes(reference)
    if len(c) != len(r) or len(c) == 0:
        raise XvjaxError(f"need as many cluster labels as reference labels, got {len(c)}, {len(r)}")
    table = coo_matrix((np.ones(len(c)), (c, r))).toarray()
    return float(table.max(axis=1).sum() / len(c)), float(table.max(axis=0).sum() / len(c))


class ClusteringCurve(NamedTuple):
    """Purity and coverage of every cut of a hierarchy: level k keeps its k most similar merges.

    similarity (M,) of merge k (k = 1 .. M); num_clusters, purity, coverage (M + 1,) at levels
    0 .. M (level 0: every point alone).
    """

    similarity: np.ndarray
    num_clusters: np.ndarray
    purity: np.ndarray
    coverage: np.ndarray

    @property
    def f1(self) -> np.ndarray:
        """Harmonic mean of purity and coverage at each level."""
        return 2 * self.purity * self.coverage / (self.purity + self.coverage)


def clustering_curve(d: Dendrogram, reference: Sequence) -> ClusteringCurve:
    """Purity and coverage after each merge of `d` in cut order, against (N,) reference labels,
    updated incrementally (each merge costs the smaller cluster's number of speakers)."""
    ref = _codes(reference)
    n = d.num_points
    if len(ref) != n:
        raise XvjaxError(f"{len(ref)} reference labels for a hierarchy of {n} points")
    order, eff = _cut_order(d)
    counts: dict[int, dict[int, int]] = {i: {int(ref[i]): 1} for i in range(n)}
    best = {i: 1 for i in range(n)}  # largest speaker count of each cluster
    spk_best = np.ones(ref.max() + 1 if n else 0, np.int64)  # largest cluster count of each speaker
    pure, cover = n, int(spk_best.sum()) if n else 0
    purity = np.empty(len(order) + 1)
    coverage = np.empty(len(order) + 1)
    purity[0], coverage[0] = 1.0, cover / n
    for k, m in enumerate(order.tolist(), 1):
        a, b = int(d.first[m]), int(d.second[m])
        ca, cb = counts.pop(a), counts.pop(b)
        merged, small = (ca, cb) if len(ca) >= len(cb) else (cb, ca)
        for spk, cnt in small.items():
            new = merged.get(spk, 0) + cnt
            merged[spk] = new
            if new > spk_best[spk]:  # a speaker's largest cluster count only grows
                cover += new - spk_best[spk]
                spk_best[spk] = new
        counts[a] = merged
        new_best = max(merged.values())
        pure += new_best - best.pop(a) - best.pop(b)
        best[a] = new_best
        purity[k], coverage[k] = pure / n, cover / n
    return ClusteringCurve(eff, n - np.arange(len(order) + 1), purity, coverage)


@dataclasses.dataclass(frozen=True)
class ThresholdChoice:
    """A chosen stopping point: the similarity threshold, the number of clusters it gives on the
    set it was chosen on, the criterion and its value there, and every candidate as
    (threshold, num_clusters, value) rows (value NaN where the candidate could not be scored;
    for `choose_threshold` a row per level, its threshold the similarity of the last merge kept,
    inf for none)."""

    threshold: float
    num_clusters: int
    criterion: str
    value: float
    table: tuple[tuple[float, int, float], ...]


def choose_threshold(d: Dendrogram, reference: Sequence) -> ThresholdChoice:
    """The stopping threshold that maximises the F1 of purity and coverage of the cut of `d`
    (the hierarchy of a labelled set, e.g. source-domain x-vectors) against its labels.

    Every level of the hierarchy is a candidate. The threshold returned lies halfway between the
    last merge kept and the first one not kept, so `cut(d, threshold)` gives the chosen level and
    on another set it stops at the same similarity.
    """
    curve = clustering_curve(d, reference)
    f1 = curve.f1
    k = int(np.argmax(f1))
    sim = curve.similarity
    if k == 0:
        thr = float(np.nextafter(sim[0], np.inf)) if len(sim) else 0.0
    elif k == len(sim):
        thr = float(sim[-1])
    else:
        thr = float(0.5 * (sim[k - 1] + sim[k]))
    levels = np.concatenate([[np.inf], sim])
    table = tuple(
        (float(levels[i]), int(curve.num_clusters[i]), float(f1[i])) for i in range(len(f1))
    )
    log.info(
        "Chose threshold %g: %d clusters, purity %.4f, coverage %.4f (F1 %.4f)",
        thr,
        int(curve.num_clusters[k]),
        curve.purity[k],
        curve.coverage[k],
        f1[k],
    )
    return ThresholdChoice(
        thr, int(curve.num_clusters[k]), "purity-coverage F1", float(f1[k]), table
    )
