"""Inspection: embeddings and their cache, projections, neighbours, views, attention maps, CLI."""

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from backend import inspect as ins
from backend.checkpoint import load_checkpoint, save_checkpoint
from backend.cli import main
from backend.errors import Cancelled, DataError
from backend.runs import checkpoint_path

from .inspect_helpers import copy_run, trained_run


@pytest.fixture(scope="module")
def cnn_run():
    return trained_run("cnn")


@pytest.fixture(scope="module")
def vit_run():
    return trained_run("vit")


def _fail(*args, **kwargs):
    raise AssertionError("features were recomputed instead of read from the cache")


# ---- embeddings ------------------------------------------------------------------------------
def test_embeddings_cached_and_reopened_without_computing(tmp_path, monkeypatch):
    run = copy_run("cnn", tmp_path)
    seen = []
    es = ins.compute_embeddings(run, progress=lambda f, m: seen.append(f))
    assert not es.from_cache and es.features.dtype == np.float32
    assert es.features.shape == (128, 256) and es.labels.shape == (128,)
    assert np.array_equal(es.indices, np.arange(128)) and len(es.class_names) == 10
    assert es.path == run / "inspect" / "last-test-backbone-0.h5" and es.path.exists()
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert not [p for p in es.path.parent.iterdir() if ".tmp-" in p.name]

    monkeypatch.setattr("backend.inspect.embeddings.extract_features", _fail)
    again = ins.compute_embeddings(run)
    assert again.from_cache
    assert np.array_equal(again.features, es.features) and np.array_equal(again.labels, es.labels)
    assert again.class_names == es.class_names and again.checkpoint == "last.pt"


def test_newer_checkpoint_invalidates_cache(tmp_path, monkeypatch):
    run = copy_run("cnn", tmp_path)
    old = ins.compute_embeddings(run, limit=40)
    assert len(old) == 40 and np.all(np.diff(old.indices) > 0)
    state = load_checkpoint(checkpoint_path(run))
    name = next(k for k, v in state["model"].items() if k.startswith("backbone.") and v.dim() == 4)
    state["model"][name] = state["model"][name] * 0.5
    save_checkpoint(state, checkpoint_path(run))
    new = ins.compute_embeddings(run, limit=40)
    assert not new.from_cache and np.array_equal(new.indices, old.indices)
    assert not np.allclose(new.features, old.features)
    monkeypatch.setattr("backend.inspect.embeddings.extract_features", _fail)
    assert ins.compute_embeddings(run, limit=40).from_cache


def test_cancelled_embedding_writes_no_cache(tmp_path):
    run = copy_run("cnn", tmp_path)
    with pytest.raises(Cancelled):
        ins.compute_embeddings(run, cancelled=lambda: True)
    assert not (run / "inspect").exists() or not any((run / "inspect").iterdir())


def test_split_images_match_embedding_points(cnn_run):
    es = ins.compute_embeddings(cnn_run, split="train", limit=30)
    images, labels, names = ins.split_images(cnn_run, es.indices, split="train")
    assert images.dtype == torch.uint8 and images.shape == (30, 3, 32, 32)
    assert np.array_equal(labels.numpy(), es.labels) and names == es.class_names


def test_projections_are_stored_in_the_cache_file(tmp_path, monkeypatch):
    run = copy_run("cnn", tmp_path)
    es = ins.compute_embeddings(run)
    xy = ins.embedding_projection(es, "pca")
    assert xy.shape == (128, 2) and xy.dtype == np.float32
    with h5py.File(es.path, "r") as fh:
        assert np.array_equal(fh["projections/pca-0"][()], xy)
    monkeypatch.setattr("backend.inspect.projection.project_2d", _fail)
    reopened = ins.compute_embeddings(run)
    assert reopened.from_cache and np.array_equal(ins.embedding_projection(reopened, "pca"), xy)


def test_pca_is_deterministic_and_orders_variance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16)) * np.linspace(3, 0.1, 16)
    a, b = ins.project_2d(x, "pca"), ins.project_2d(torch.from_numpy(x), "pca")
    assert a.shape == (200, 2) and np.array_equal(a, b)
    assert a[:, 0].var() >= a[:, 1].var()
    assert ins.project_2d(x[:2], "umap").shape == (2, 2)  # too few points: PCA fallback


def _blobs(seed=1, k=4, per=50, dim=32, spread=4.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * spread
    x = np.concatenate([c + rng.normal(size=(per, dim)) for c in centres])
    return x, np.repeat(np.arange(k), per)


def test_reproducible_umap_is_identical_with_a_seed():
    x, _ = _blobs()
    first = ins.project_2d(x, "umap", seed=3, reproducible=True)
    assert first.shape == (200, 2) and first.dtype == np.float32 and np.isfinite(first).all()
    assert np.array_equal(first, ins.project_2d(x, "umap", seed=3, reproducible=True))


def _knn_accuracy_2d(xy, labels, k=5):
    """Leave-one-out k-NN accuracy of the labels on the 2-D layout."""
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    near = np.argsort(d, axis=1)[:, :k]
    votes = np.array([np.bincount(labels[row], minlength=labels.max() + 1).argmax() for row in near])
    return float((votes == labels).mean())


def test_fast_umap_keeps_clusters_and_shows_a_draft_first():
    x, labels = _blobs(seed=2, k=6, per=80)
    drafts, seen = [], []
    xy = ins.project_2d(x, "umap", progress=lambda f, m: seen.append((f, m)), on_draft=drafts.append)
    assert xy.shape == (480, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
    assert _knn_accuracy_2d(xy, labels) >= 0.95
    assert len(drafts) == 1 and drafts[0].shape == (480, 2) and _knn_accuracy_2d(drafts[0], labels) >= 0.9
    epochs = [m for _, m in seen if "epoch" in m]
    assert any("draft" in m for m in epochs) and "refining" in epochs[-1]
    done, total = epochs[-1].split()[-1].split("/")
    assert done == total == str(ins.umap_layout.DRAFT_EPOCHS + ins.umap_layout.REFINE_EPOCHS)


def test_exact_cosine_knn_matches_brute_force():
    x, _ = _blobs(seed=3, k=3, per=40, dim=8, spread=1.0)
    idx, dist = ins.umap_layout.exact_cosine_knn(x, 6)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = u @ u.T
    assert idx.shape == dist.shape == (120, 6) and (idx[:, 0] == np.arange(120)).all() and (dist[:, 0] == 0).all()
    np.fill_diagonal(sims, -np.inf)
    expected = np.sort(1.0 - np.sort(sims, axis=1)[:, ::-1][:, :5], axis=1)
    assert np.allclose(dist[:, 1:], expected, atol=1e-5) and (np.diff(dist, axis=1) >= -1e-6).all()


def test_fast_and_reproducible_umap_are_cached_apart(tmp_path, monkeypatch):
    run = copy_run("cnn", tmp_path)
    es = ins.compute_embeddings(run, limit=64)
    fast = ins.embedding_projection(es, "umap")
    exact = ins.embedding_projection(es, "umap", reproducible=True)
    assert ins.projection_key("umap") != ins.projection_key("umap", reproducible=True)
    with h5py.File(es.path, "r") as fh:
        assert np.array_equal(fh[f"projections/{ins.projection_key('umap')}"][()], fast)
        assert np.array_equal(fh["projections/umap-0"][()], exact)
    monkeypatch.setattr("backend.inspect.projection.project_2d", _fail)
    reopened = ins.compute_embeddings(run, limit=64)
    assert np.array_equal(ins.embedding_projection(reopened, "umap", reproducible=True), exact)
    assert np.array_equal(ins.embedding_projection(reopened, "umap"), fast)


def test_cluster_labels_find_blobs():
    rng = np.random.default_rng(2)
    centres = np.eye(8)[:3] * 10
    x = np.concatenate([c + 0.1 * rng.normal(size=(30, 8)) for c in centres])
    labels = ins.cluster_labels(x, k=3, seed=0)
    assert labels.shape == (90,) and labels.dtype == np.int64
    for block in range(3):
        assert len(set(labels[30 * block:30 * (block + 1)])) == 1
    assert len(set(labels)) == 3
    assert np.array_equal(labels, ins.cluster_labels(x, k=3, seed=0))


def test_nearest_neighbours_put_the_image_first():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 8)).astype(np.float32)
    x[7] = x[3] * 2.0  # same direction: cosine 1
    idx, sims = ins.nearest_neighbours(x, 7, k=5)
    assert idx[0] == 7 and idx[1] == 3 and sims[0] == pytest.approx(1.0) and sims[1] == pytest.approx(1.0)
    assert len(idx) == 5 and len(set(idx)) == 5 and np.all(np.diff(sims) <= 1e-6)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    expected = np.sort(xn @ xn[7])[::-1][:5]
    assert np.allclose(np.sort(sims)[::-1], expected, atol=1e-6)
    assert len(ins.nearest_neighbours(x, 0, k=100)[0]) == 20


def test_augmentation_pairs_follow_the_run_config(cnn_run):
    originals, views = ins.augmentation_pairs(cnn_run, [0, 5, 9], seed=1)
    assert originals.dtype == torch.uint8 and originals.shape == (3, 3, 32, 32)
    assert len(views) == 2 and all(v.shape == (3, 3, 32, 32) for v in views)
    assert all(0.0 <= v.min() and v.max() <= 1.0 for v in views)
    again = ins.augmentation_pairs(cnn_run, [0, 5, 9], seed=1)[1]
    other = ins.augmentation_pairs(cnn_run, [0, 5, 9], seed=2)[1]
    assert torch.equal(views[0], again[0]) and not torch.equal(views[0], other[0])
    assert not torch.allclose(views[0], views[1])


# ---- attention -------------------------------------------------------------------------------
def test_vit_attention_maps_sum_to_one_per_head(vit_run, cnn_run):
    images, _, _ = ins.split_images(cnn_run, [0, 1])
    result = ins.attention_maps(vit_run, images)
    assert result.kind == "attention" and result.num_heads == 3 and result.cell == 4
    assert result.grid.shape == (2, 3, 8, 8) and result.per_head.shape == (2, 3, 32, 32)
    assert result.mean.shape == (2, 32, 32) and result.images.shape == (2, 3, 32, 32)
    assert torch.allclose(result.grid.sum(dim=(-2, -1)), torch.ones(2, 3), atol=1e-5)
    assert torch.allclose(result.per_head.sum(dim=(-2, -1)), torch.ones(2, 3), atol=1e-5)
    assert (result.grid >= 0).all()
    # nearest upsampling: every patch a flat block holding the patch's mass
    assert torch.allclose(result.per_head[:, :, :4, :4].sum(dim=(-2, -1)), result.grid[:, :, 0, 0], atol=1e-6)
    smooth = ins.attention_maps(vit_run, images.float() / 255, upsample="bilinear")
    assert torch.allclose(smooth.grid, result.grid, atol=1e-5)
    assert torch.allclose(smooth.per_head.sum(dim=(-2, -1)), torch.ones(2, 3), atol=1e-5)


def _check_minimal(grid, mask, mass):
    flat, keep = grid.flatten(-2), mask.flatten(-2)
    for values, kept in zip(flat.reshape(-1, flat.shape[-1]), keep.reshape(-1, keep.shape[-1])):
        values = values / values.sum()
        total = values[kept].sum().item()
        assert total >= mass - 1e-9
        smallest = values[kept].min().item()
        assert total - smallest < mass
        if (~kept).any():  # nothing left out outweighs anything kept
            assert values[~kept].max().item() <= smallest + 1e-12


@pytest.mark.parametrize("mass", [0.1, 0.6, 0.9])
def test_threshold_mask_keeps_the_smallest_set_holding_the_mass(mass):
    grid = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) ** 3
    mask = ins.attention_threshold_mask(grid, mass)
    assert mask.dtype == torch.bool and mask.shape == grid.shape
    _check_minimal(grid, mask, mass)


def test_threshold_mask_on_real_vit_attention(vit_run, cnn_run):
    images, _, _ = ins.split_images(cnn_run, [3])
    grid = ins.attention_maps(vit_run, images[0]).grid
    mask = ins.attention_threshold_mask(grid, 0.6)
    _check_minimal(grid, mask, 0.6)
    assert ins.attention_threshold_mask(grid, 1.0).all()


def test_cnn_gets_feature_norm_maps(cnn_run):
    images, _, _ = ins.split_images(cnn_run, [0, 1, 2])
    result = ins.attention_maps(cnn_run, images)
    assert result.kind == "feature_norm" and "ViT" in result.note
    assert result.grid.shape == (3, 1, 4, 4) and result.per_head.shape == (3, 1, 32, 32)
    assert torch.allclose(result.per_head.sum(dim=(-2, -1)), torch.ones(3, 1), atol=1e-5)


def test_load_image_file(tmp_path):
    path = tmp_path / "cut-out.png"
    Image.new("RGBA", (40, 20), (255, 0, 0, 0)).save(path)
    image = ins.load_image_file(path, 32)
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32)
    assert int(image.min()) == 255  # transparent pixels become white
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        ins.load_image_file(bad, 32)


# ---- CLI -------------------------------------------------------------------------------------
def test_cli_embeddings_and_attention(tmp_path, vit_run, capsys):
    run = copy_run("cnn", tmp_path)
    assert main(["inspect", "--run-dir", str(run), "embeddings", "--limit", "64", "--projection", "pca"]) == 0
    out = capsys.readouterr().out
    assert "64 x 256" in out and "computed" in out and "pca" in out
    assert main(["inspect", "--run-dir", str(run), "embeddings", "--limit", "64"]) == 0
    assert "read from the cache" in capsys.readouterr().out

    image = tmp_path / "photo.png"
    Image.new("RGB", (50, 40), (10, 200, 30)).save(image)
    assert main(["inspect", "--run-dir", str(vit_run), "attention", "--image", str(image)]) == 0
    out = capsys.readouterr().out
    assert "attention maps" in out and "head 2" in out
    assert main(["inspect", "--run-dir", str(run), "attention"]) == 0
    assert "feature_norm" in capsys.readouterr().out


def test_cli_errors_exit_codes(tmp_path, capsys):
    run = copy_run("cnn", tmp_path)
    assert main(["inspect", "--run-dir", str(tmp_path / "nothing"), "embeddings"]) == 1
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    assert main(["inspect", "--run-dir", str(run), "attention", "--image", str(bad)]) == 3
    err = capsys.readouterr().err
    assert "error:" in err and "bad.png" in err


@pytest.mark.parametrize("reproducible", [False, True])
def test_umap_reports_its_epochs_and_stops_when_cancelled(reproducible):
    x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    seen = []
    ins.project_2d(x, "umap", seed=1, progress=lambda f, m: seen.append((f, m)), reproducible=reproducible)
    epochs = [m for _, m in seen if "epoch" in m]
    done, total = epochs[-1].split()[-1].split("/")
    assert done == total and int(total) >= 200  # every optimisation epoch reported, up to the last
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(set(fractions)) > 3

    def cancelled():  # cancel once the layout optimisation has started
        return any("epoch" in m for _, m in seen_again)

    seen_again = []
    with pytest.raises(Cancelled):
        ins.project_2d(x, "umap", seed=1, progress=lambda f, m: seen_again.append((f, m)), cancelled=cancelled,
                       reproducible=reproducible)
    assert any("epoch" in m for _, m in seen_again) and not any(f == 1.0 for f, _ in seen_again)


def test_cli_reproducible_umap(tmp_path, capsys):
    run = copy_run("cnn", tmp_path)
    args = ["inspect", "--run-dir", str(run), "embeddings", "--limit", "64", "--projection", "umap"]
    assert main(args + ["--reproducible"]) == 0
    assert "umap reproducible" in capsys.readouterr().out
    assert main(args) == 0
    with h5py.File(ins.compute_embeddings(run, limit=64).path, "r") as fh:
        assert {"umap-0", ins.projection_key("umap")} <= set(fh["projections"])


def test_umap_after_a_cancel_runs_in_another_thread():
    """A cancel raised from UMAP's tqdm bar must not leave tqdm's lock held (the next UMAP in a
    worker thread would wait for it forever)."""
    import threading

    x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    seen = []
    with pytest.raises(Cancelled):
        ins.project_2d(x, "umap", progress=lambda f, m: seen.append(m),
                       cancelled=lambda: any("epoch" in m for m in seen))
    out = []
    worker = threading.Thread(target=lambda: out.append(ins.project_2d(x, "umap")), daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive() and out[0].shape == (300, 2)
