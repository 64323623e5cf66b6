"""Speaker-verification backend: Kaldi's means, LDA, PLDA (EM, adaptation, scoring), score
normalisation, calibration, and the backend system built from them. Numbers match Kaldi's binaries
(see tests/test_backend_*.py). Modules:

    linalg        eigendecomposition sorted and signed as Kaldi's, class means, checks (numpy)
    means         ivector-mean, ivector-subtract-global-mean, ivector-normalize-length (numpy)
    lda           ivector-compute-lda, transform-vec (numpy)
    plda          the PLDA model: TransformIvector, LogLikelihoodRatio, EM training (numpy)
    adapt         ivector-adapt-plda, PLDA interpolation with an in-domain PLDA (numpy)
    coral         correlation alignment (CORAL) of x-vectors between domains (numpy)
    calibration   logistic-regression calibration to LLRs (numpy)
    trials        Trials: a trial list and its lookup of ids to vector rows (numpy)
    vector_tables vector tables read and written with the binaries' checks (numpy)
    score_files   `<enroll> <test> <score>` files (numpy)
    scoring       batched and dense PLDA / cosine scoring, sharded over devices (jax)
    dense_scoring ivector-plda-scoring-dense: all pairs per recording, recording PCA (numpy)
    snorm         S-norm, adaptive S-norm, Z-norm, T-norm with a cohort (jax)
    system        PldaBackend (mean -> LDA -> length norm -> PLDA: fit, adapt, interpolate,
                  project, score) and XvectorSet, as the sre16/v2 recipe runs them (jax, through
                  scoring)
    cluster       agglomerative clustering by PLDA or cosine similarity: exact average linkage
                  in blocks (jax), dense complete/single linkage (scipy), cuts, purity/coverage
    pseudo_labels clustering-based pseudo-speakers and the backends trained on them
    plots         DET curves (matplotlib)
    commands/     the Kaldi-named command line tools (vectors, lda_plda, scoring, metrics)

Kaldi's metrics (compute-eer, compute_min_dcf.py) are `xvjax.metrics`; PLDA files `xvjax.kaldi.plda_io`.

    from xvjax.backend import adapt, cluster, lda, means, plda, pseudo_labels, scoring, snorm
    from xvjax.backend.system import PldaBackend, XvectorSet
    from xvjax.backend.trials import Trials

    mean = means.global_mean(x)                                   # ivector-mean
    x = means.subtract_mean(x, mean)                              # ivector-subtract-global-mean
    x, _ = means.normalize_length(x, scaleup=True)                # ivector-normalize-length
    lda_mat = lda.compute_lda(x, spk_ids, dim=200)                # ivector-compute-lda, (dim, D+1)
    y = lda.transform_vec(lda_mat, x)                             # transform-vec
    model = plda.train_plda(y, spk_ids, num_em_iters=10)          # ivector-compute-plda -> Plda
    model = adapt.adapt_plda(model, y_in_domain, 0.75, 0.25)      # ivector-adapt-plda
    u, _ = plda.plda_transform(model, enroll, num_utts=n)         # Plda::TransformIvector
    s = scoring.score_trials(model, enroll, test, e_idx, t_idx, n)      # batched trial list
    m = scoring.score_matrix(model, enroll, test, n, block_size=2048)   # dense, sharded
    s = snorm.norm_trial_scores(model, enroll, test, cohort, e_idx, t_idx, n,
                                method="asnorm", top_k=300)

    backend = PldaBackend.fit(train, lda_dim=200)                 # the whole sre16/v2 backend
    backend = backend.with_mean(in_domain_mean).adapt(in_domain, 0.75, 0.25)
    labels = cluster.ahc(in_domain, "plda", plda_backend=backend, threshold=0.0)
    pseudo = XvectorSet(keys, in_domain, pseudo_labels.pseudo_utt2spk(keys, labels))
    backend = backend.interpolate(
        pseudo_labels.fit_pseudo_label_backend(pseudo, space=backend), weight=0.5)
    scores, scored = backend.score(enroll, test, Trials.read("trials"), norm="asnorm",
                                   cohort=in_domain, top_k=300)
"""
