"""Metrics against closed forms and brute-force references."""

from __future__ import annotations

import math

import pytest
import torch

from backend import metrics


def rand(*shape, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


def circle(n, dtype=torch.float64):
    angles = 2 * math.pi * torch.arange(n, dtype=dtype) / n
    return torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)


# ---------------------------------------------------------------------------------------------
# Alignment and uniformity (Wang & Isola 2020)


def test_alignment_values():
    x = rand(10, 4, seed=1)
    assert float(metrics.alignment(x, 3 * x)) == pytest.approx(0.0, abs=1e-12)  # same directions
    assert float(metrics.alignment(x, -x)) == pytest.approx(4.0)  # antipodal: ||2u||^2
    assert float(metrics.alignment(x, -x, alpha=1)) == pytest.approx(2.0)
    y = rand(10, 4, seed=2)
    expected = sum(float(((a / a.norm() - b / b.norm()) ** 2).sum()) ** 1.5
                   for a, b in zip(x, y)) / 10
    assert float(metrics.alignment(x, y, alpha=3)) == pytest.approx(expected)


def test_alignment_gradient_finite_for_identical_pairs():
    x = rand(4, 3, seed=3).requires_grad_()
    metrics.alignment(x, x.detach().clone()).backward()
    assert torch.isfinite(x.grad).all()


def test_uniformity_on_evenly_spread_circle_closed_form():
    # By symmetry every point sees the others at offsets m = 1..n-1 with squared distance
    # 2 - 2 cos(2 pi m / n), so the mean over pairs is the mean over m.
    n, t = 12, 2.0
    expected = math.log(sum(math.exp(-t * (2 - 2 * math.cos(2 * math.pi * m / n)))
                            for m in range(1, n)) / (n - 1))
    assert float(metrics.uniformity(5 * circle(n), t=t)) == pytest.approx(expected, rel=1e-10)
    # Bessel form: the mean over all n offsets m = 0..n-1 (self included) is, to machine precision
    # for moderate n (periodic trapezoid rule), e^{-2t} I0(2t); leaving out the self pair (value 1)
    # gives the mean over the n - 1 others.
    n = 64
    full = math.exp(-2 * t) * float(torch.special.i0(torch.tensor(2 * t, dtype=torch.float64)))
    expected = math.log((n * full - 1) / (n - 1))
    assert float(metrics.uniformity(circle(n), t=t)) == pytest.approx(expected, rel=1e-9)


def test_uniformity_collapsed_is_zero_and_matches_pairs():
    z = torch.ones(6, 3)
    assert float(metrics.uniformity(z)) == pytest.approx(0.0, abs=1e-6)
    x = rand(7, 3, seed=4)
    u = [v / v.norm() for v in x]
    pairs = [math.exp(-2 * float(((u[i] - u[j]) ** 2).sum())) for i in range(7) for j in range(i + 1, 7)]
    assert float(metrics.uniformity(x)) == pytest.approx(math.log(sum(pairs) / len(pairs)))


# ---------------------------------------------------------------------------------------------
# Collapse indicators


def test_embedding_std_collapsed_and_healthy():
    assert float(metrics.embedding_std(torch.ones(50, 16) * 3)) == pytest.approx(0.0, abs=1e-7)
    d = 64
    z = rand(20000, d, seed=5, dtype=torch.float32)
    assert float(metrics.embedding_std(z)) == pytest.approx(1 / math.sqrt(d), rel=0.02)


def orthonormal(rows, cols, seed):
    q, _ = torch.linalg.qr(rand(rows, cols, seed=seed))
    return q  # (rows, cols) with orthonormal columns


@pytest.mark.parametrize("r", [1, 5, 12])
def test_effective_rank_of_equal_singular_values_is_rank(r):
    u, v = orthonormal(64, r, seed=6), orthonormal(32, r, seed=7)
    z = 3.0 * u @ v.T  # rank r, all singular values 3
    assert float(metrics.effective_rank(z)) == pytest.approx(r, rel=1e-4)
    assert float(metrics.effective_rank(z.float())) == pytest.approx(r, rel=1e-3)


def test_effective_rank_matches_definition():
    z = rand(40, 10, seed=8)
    s = torch.linalg.svdvals(z).tolist()
    p = [x / sum(s) + 1e-7 for x in s]
    expected = math.exp(-sum(x * math.log(x) for x in p))
    assert float(metrics.effective_rank(z)) == pytest.approx(expected)
    assert float(metrics.effective_rank(7 * z)) == pytest.approx(expected)  # scale-free
    assert float(metrics.effective_rank(torch.zeros(5, 4))) == pytest.approx(1.0, abs=1e-4)


# ---------------------------------------------------------------------------------------------
# Weighted kNN


def brute_knn(features, bank, labels, num_classes, k, temperature):
    out = []
    bank_u = [b / b.norm() for b in bank]
    for f in features:
        fu = f / f.norm()
        sims = sorted(((float(fu @ b), i) for i, b in enumerate(bank_u)), reverse=True)[:k]
        votes = [0.0] * num_classes
        for s, i in sims:
            votes[int(labels[i])] += math.exp(s / temperature)
        out.append(max(range(num_classes), key=lambda c: votes[c]))
    return torch.tensor(out)


def clusters(per_class, num_classes, dim, seed, noise=0.05):
    centres = torch.eye(num_classes, dim, dtype=torch.float64) * 4
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return centres[labels] + noise * rand(len(labels), dim, seed=seed), labels


def test_knn_perfect_on_separable_clusters():
    bank, bank_labels = clusters(30, 5, 8, seed=9)
    queries, labels = clusters(20, 5, 8, seed=10)
    pred = metrics.knn_predict(queries, bank, bank_labels, 5, k=10)
    assert pred.dtype == torch.int64 and pred.shape == (100,)
    assert torch.equal(pred, labels)
    assert metrics.knn_accuracy(queries, labels, bank, bank_labels, 5, k=10) == 1.0


@pytest.mark.parametrize("k,temperature", [(1, 0.1), (15, 0.1), (40, 0.5)])
def test_knn_matches_brute_force(k, temperature):
    bank, queries = rand(120, 6, seed=11), rand(40, 6, seed=12)
    bank_labels = torch.randint(0, 4, (120,), generator=torch.Generator().manual_seed(13))
    expected = brute_knn(queries, bank, bank_labels, 4, k, temperature)
    assert torch.equal(metrics.knn_predict(queries, bank, bank_labels, 4, k, temperature), expected)


def test_knn_chunking_and_k_clamp_do_not_change_result():
    bank, queries = rand(50, 5, seed=14, dtype=torch.float32), rand(33, 5, seed=15, dtype=torch.float32)
    bank_labels = torch.randint(0, 3, (50,), generator=torch.Generator().manual_seed(16))
    full = metrics.knn_predict(queries, bank, bank_labels, 3, k=20, chunk_size=10_000)
    for chunk in (1, 7, 32, 33):
        assert torch.equal(metrics.knn_predict(queries, bank, bank_labels, 3, k=20, chunk_size=chunk),
                           full)
    assert torch.equal(metrics.knn_predict(queries, bank, bank_labels, 3, k=1000),
                       metrics.knn_predict(queries, bank, bank_labels, 3, k=50))


def test_knn_small_temperature_is_finite_nearest_neighbour():
    bank, queries = rand(60, 5, seed=17, dtype=torch.float32), rand(20, 5, seed=18, dtype=torch.float32)
    bank_labels = torch.randint(0, 3, (60,), generator=torch.Generator().manual_seed(19))
    nearest = metrics.knn_predict(queries, bank, bank_labels, 3, k=1)
    assert torch.equal(metrics.knn_predict(queries, bank, bank_labels, 3, k=60, temperature=1e-4),
                       nearest)


def test_knn_accepts_bf16_and_rejects_empty_bank():
    bank, bank_labels = clusters(10, 3, 4, seed=20)
    queries, labels = clusters(5, 3, 4, seed=21)
    pred = metrics.knn_predict(queries.bfloat16(), bank.bfloat16(), bank_labels, 3, k=5)
    assert torch.equal(pred, labels)
    with pytest.raises(ValueError):
        metrics.knn_predict(queries, bank[:0], bank_labels[:0], 3)


def test_knn_votes_match_brute_force_and_give_top5():
    from backend.metrics import knn_votes
    g = torch.Generator().manual_seed(3)
    bank, queries = torch.randn(60, 8, generator=g), torch.randn(7, 8, generator=g)
    labels = torch.randint(0, 6, (60,), generator=g)
    votes = knn_votes(queries, bank, labels, 6, k=9, temperature=0.2, chunk_size=3)
    sim = torch.nn.functional.normalize(queries, dim=1) @ torch.nn.functional.normalize(bank, dim=1).T
    for q in range(7):
        top = sim[q].argsort(descending=True)[:9]
        expected = torch.zeros(6)
        for i in top:
            expected[labels[i]] += math.exp(sim[q, i].item() / 0.2)
        # Votes are scaled per query by exp(-best/T): compare after normalising each row.
        assert torch.allclose(votes[q] / votes[q].sum(), expected / expected.sum(), atol=1e-5)
    assert torch.equal(votes.argmax(dim=1), metrics.knn_predict(queries, bank, labels, 6, k=9, temperature=0.2))
