from soxai.embed.features import auto_umap_epochs


def test_auto_umap_epochs__umap_default_up_to_10k_then_100():
    # None leaves UMAP's own rule (500 up to 10,000), so the demo's 2,100 samples embed exactly as before
    assert auto_umap_epochs(2_100) is None and auto_umap_epochs(10_000) is None
    assert auto_umap_epochs(10_001) == 100 and auto_umap_epochs(1_000_000) == 100


def test_embed_features__leaves_torch_thread_count_as_it_was():
    # numba's OpenMP layer, started by UMAP, set the shared OpenMP runtime to all cores: torch then computed
    # with another thread count than the user set (OMP_NUM_THREADS=1) and rounded differently
    import subprocess
    import sys

    code = ("import numpy as np, torch; from soxai.embed.features import embed_features; "
            "embed_features(np.random.default_rng(0).random((300, 16), dtype=np.float32), 8, 15, 0.0, 2, seed=0); "
            "print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "1"


def test_warm_umap_kernels__embeds_what_the_stage_embeds_on_both_exact_paths(monkeypatch):
    # numba compiles per argument type: the warm-up compiles what a run uses only if it embeds the stage's
    # dtype (float32 PCA vectors, soxai.embed.features.fit_pca_model) on UMAP's own search and on soxai's
    # exact search, with the stage's defaults for the rest
    import numpy as np

    import soxai.embed.warmup as warmup
    from soxai.embed.features import exact_knn_wanted, fit_pca_model

    calls = []
    monkeypatch.setattr(warmup, "embed_reduced", lambda pca, **kw: calls.append((pca, kw)))
    assert warmup.warm_umap_kernels() >= 0
    stage_dtype = fit_pca_model(np.random.default_rng(0).random((20, 6)), 4, 0)[1].dtype
    assert {pca.dtype for pca, _ in calls} == {stage_dtype}
    assert {exact_knn_wanted(len(pca), kw["knn"]) for pca, kw in calls} == {False, True}
    assert all(kw["n_components"] == 2 and kw["min_dist"] == 0.0 for _, kw in calls)
