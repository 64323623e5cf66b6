"""Backend in numpy/jnp: Kaldi's means, LDA, PLDA (EM, adaptation, scoring), score normalisation,
calibration. Numbers match Kaldi's binaries (see tests/test_backend_*.py); import the modules:

    from xvjax.backend import means, lda, plda, adapt, scoring, snorm, calibration
    from xvjax.kaldi import plda_io
    from xvjax import metrics

    mean = means.global_mean(x)                                   # ivector-mean
    x = means.subtract_mean(x, mean)                              # ivector-subtract-global-mean
    x, _ = means.normalize_length(x, scaleup=True)                # ivector-normalize-length
    lda_mat = lda.compute_lda(x, spk_ids, dim=200)                # ivector-compute-lda, (dim, D+1)
    y = lda.transform_vec(lda_mat, x)                             # transform-vec
    model = plda.train_plda(y, spk_ids, num_em_iters=10)          # ivector-compute-plda -> Plda
    model = adapt.adapt_plda(model, y_in_domain, 0.75, 0.25)      # ivector-adapt-plda
    model = plda.smooth_within_class_covar(model, 0.1)            # ivector-copy-plda --smoothing
    plda_io.write_plda(model, "plda"); model = plda_io.read_plda("plda")
    u, _ = plda.plda_transform(model, enroll, num_utts=n)         # Plda::TransformIvector
    s = plda.plda_llr(model, u[i], v[j], n[i])                    # Plda::LogLikelihoodRatio
    s = scoring.score_trials(model, enroll, test, e_idx, t_idx, n)      # batched trial list
    m = scoring.score_matrix(model, enroll, test, n, block_size=2048)   # dense, sharded
    s = snorm.norm_trial_scores(model, enroll, test, cohort, e_idx, t_idx, n,
                                method="asnorm", top_k=300)
    eer, thr = metrics.compute_eer(s, labels); dcf, thr = metrics.compute_min_dcf(s, labels, 0.01)

CLI commands (Kaldi names and options) are in `commands.py`, `commands_score.py`,
`commands_metrics.py`.
"""
