"""Clustering tools: cluster-vectors (agglomerative clustering into a pseudo-speaker utt2spk)."""

from __future__ import annotations

import logging

import numpy as np

from xvjax.backend.commands import PLDA_CONFIG_OPTS
from xvjax.backend.vector_tables import read_vectors
from xvjax.cli import Opt, command
from xvjax.errors import XvjaxError
from xvjax.kaldi import plda_io, tables

log = logging.getLogger("xvjax")


@command(
    "cluster-vectors",
    "Agglomerative clustering of vectors (PLDA or cosine similarity) into a pseudo-speaker utt2spk",
    usage="""
    Clusters the input vectors bottom-up, merging the two most similar clusters until the best
    similarity falls below --threshold or --num-clusters remain (give one), and writes an
    utt2spk of pseudo-speakers '<utt> <prefix><number>'. Average linkage (the mean similarity
    over all pairs of two clusters) is exact and computed in blocks, so 100k vectors need no
    N x N matrix; complete and single linkage build the whole matrix (at most 20000 vectors).
    --similarity=cosine compares the vectors as given; --similarity=plda scores them with the
    PLDA log-likelihood ratio, one vector on each side, transformed as ivector-plda-scoring does,
    so prepare them like the PLDA's training data (subtract mean | transform-vec | normalize-length).
    Usage: xvjax cluster-vectors [options] <vector-rspecifier> <utt2spk-wxfilename>
    e.g.: xvjax cluster-vectors --similarity=plda --plda=plda --threshold=0 "ark:xvjax ivector-subtract-global-mean mean.vec scp:xvector.scp ark:- | xvjax transform-vec lda.mat ark:- ark:- | xvjax ivector-normalize-length ark:- ark:- |" data/adapt_pseudo/utt2spk""",
    opts=[
        Opt("similarity", "cosine", "Similarity of two vectors: cosine or plda"),
        Opt("plda", "", "PLDA model for --similarity=plda"),
        Opt(
            "threshold",
            None,
            "Stop when no two clusters are this similar (or --num-clusters)",
            float,
        ),
        Opt("num-clusters", None, "Stop at this many clusters (or --threshold)", int),
        Opt("linkage", "average", "Cluster similarity: average, complete or single"),
        Opt("prefix", "clu", "Pseudo-speaker names are this prefix and the cluster number"),
        Opt("block-size", 2048, "Columns per block of cluster similarities (average linkage)"),
        Opt("precision", "float32", "Block GEMM precision: float32 or float64"),
        *PLDA_CONFIG_OPTS,
    ],
    nargs=(2, 2),
)
def cluster_vectors(opts, rspec, utt2spk_wx):
    from xvjax.backend import cluster
    from xvjax.backend import plda as plda_lib
    from xvjax.backend.pseudo_labels import pseudo_utt2spk
    from xvjax.backend.scoring import precision_dtype

    if (opts.threshold is None) == (opts.num_clusters is None):
        raise XvjaxError("give exactly one of --threshold and --num-clusters")
    if opts.similarity not in cluster.SIMILARITIES:
        raise XvjaxError(f"--similarity must be plda or cosine, got '{opts.similarity}'")
    if (opts.similarity == "plda") != bool(opts.plda):
        raise XvjaxError("--plda=<model> goes with --similarity=plda (and only with it)")
    if opts.linkage not in cluster.LINKAGES:
        raise XvjaxError(f"--linkage must be one of {', '.join(cluster.LINKAGES)}")
    dtype = precision_dtype(opts.precision)
    model = plda_io.read_plda(opts.plda) if opts.plda else None
    keys, x = read_vectors(rspec, dim=model.dim if model else None)
    if not keys:
        raise XvjaxError(f"no vectors read from '{rspec}'")
    if model is None:
        features = cluster.cosine_pair_features(x)
    else:
        u, _ = plda_lib.plda_transform(
            model, x, 1, opts.normalize_length, opts.simple_length_normalization
        )
        features = cluster.plda_pair_features(model, u)
    labels = cluster.flat_clusters(
        features,
        opts.threshold,
        opts.num_clusters,
        opts.linkage,
        block_size=opts.block_size,
        dtype=dtype,
    )
    tables.write_text_table(utt2spk_wx, pseudo_utt2spk(keys, labels, opts.prefix))
    sizes = np.bincount(labels)
    log.info(
        "Wrote %d utterances in %d pseudo-speakers to %s (%d singletons)",
        len(keys),
        len(sizes),
        utt2spk_wx,
        int(np.sum(sizes == 1)),
    )
    return 0
