from soxai.embed.features import auto_umap_epochs


def test_auto_umap_epochs__umap_default_up_to_10k_then_100():
    # None leaves UMAP's own rule (500 up to 10,000), so the demo's 2,100 samples embed exactly as before
    assert auto_umap_epochs(2_100) is None and auto_umap_epochs(10_000) is None
    assert auto_umap_epochs(10_001) == 100 and auto_umap_epochs(1_000_000) == 100
