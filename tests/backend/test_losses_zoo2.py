"""Method zoo II losses against independent computations written here (explicit loops in
float64): SupCon, HCL, MoCHi, memory-bank NCE / PIRL, CPC, MAE, inpainting, colorization (the
jigsaw cross entropy is in test_pretext_ops)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from backend import losses
from backend.pretext import colorization as col
from backend.pretext import cpc, memory_bank, mochi, reconstruction


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def unit(v):
    return [float(x) / math.sqrt(sum(float(y) ** 2 for y in v)) for x in v]


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def close(actual, expected, tol=1e-9):
    actual = actual.detach() if isinstance(actual, torch.Tensor) else actual
    assert float(actual) == pytest.approx(float(expected), rel=tol, abs=tol)


# --------------------------------------------------------------------------------------------
# SupCon


def ref_supcon(z, labels, t):
    z = [unit(v) for v in z]
    labels = [int(y) for y in labels]
    terms = []
    for i in range(len(z)):
        positives = [p for p in range(len(z)) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        den = sum(math.exp(dot(z[i], z[a]) / t) for a in range(len(z)) if a != i)
        terms.append(-sum(math.log(math.exp(dot(z[i], z[p]) / t) / den) for p in positives)
                     / len(positives))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_supcon_matches_explicit_positive_loops(t):
    z = rand(9, 4, seed=3)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 3, 2, 1])   # label 3 has no positive: skipped
    close(losses.supcon(z, labels, temperature=t), ref_supcon(z, labels, t))


def test_supcon_two_views_per_image_is_nt_xent_with_positive_in_denominator():
    # One positive per anchor (the other view): SupCon reduces to NT-Xent.
    z1, z2 = rand(5, 3, seed=1), rand(5, 3, seed=2)
    labels = torch.arange(5).repeat(2)
    close(losses.supcon(torch.cat([z1, z2]), labels, 0.5), losses.nt_xent(z1, z2, 0.5))


def test_supcon_errors_without_any_positive_or_bad_labels():
    with pytest.raises(ValueError, match="no anchor has a positive"):
        losses.supcon(rand(4, 3), torch.arange(4))
    with pytest.raises(ValueError, match="labels of shape"):
        losses.supcon(rand(4, 3), torch.arange(3))


# --------------------------------------------------------------------------------------------
# HCL


def ref_hcl(z1, z2, t, beta, tau_plus, importance=True):
    """The estimator of Robinson et al.'s image code, one anchor at a time."""
    z = [unit(v) for v in torch.cat([z1, z2])]
    n2, n = len(z), len(z) // 2
    m = n2 - 2
    total = 0.0
    for i in range(n2):
        p = (i + n) % n2
        pos = math.exp(dot(z[i], z[p]) / t)
        neg = [math.exp(dot(z[i], z[k]) / t) for k in range(n2) if k not in (i, p)]
        if importance:
            imp = [x ** beta for x in neg]
            reweighted = sum(w * x for w, x in zip(imp, neg)) / (sum(imp) / m)
        else:
            reweighted = sum(neg)
        ng = max((-tau_plus * m * pos + reweighted) / (1 - tau_plus), m * math.exp(-1 / t))
        total += -math.log(pos / (pos + ng))
    return total / n2


@pytest.mark.parametrize("t,beta,tau_plus", [(0.5, 1.0, 0.1), (0.2, 0.5, 0.05), (0.5, 2.0, 0.3)])
def test_hcl_matches_reference_estimator(t, beta, tau_plus):
    z1, z2 = rand(6, 5, seed=4), rand(6, 5, seed=5)
    close(losses.hcl(z1, z2, t, beta, tau_plus), ref_hcl(z1, z2, t, beta, tau_plus))


def test_hcl_beta_zero_is_the_debiased_loss_and_clamp_engages():
    z1 = rand(5, 4, seed=6)
    z2 = z1 + 0.01 * rand(5, 4, seed=7)   # near-identical views: a large tau_plus hits the clamp
    for tau_plus in (0.1, 0.9):
        expected = ref_hcl(z1, z2, 0.5, 0.0, tau_plus, importance=False)
        close(losses.hcl(z1, z2, 0.5, beta=0.0, tau_plus=tau_plus), expected)
    # With tau_plus = 0.9 every anchor is clamped: the loss is -log(pos / (pos + M e^{-1/t})).
    z = [unit(v) for v in torch.cat([z1, z2])]
    clamped = sum(-math.log(1 / (1 + 8 * math.exp(-2) / math.exp(dot(z[i], z[(i + 5) % 10]) / 0.5)))
                  for i in range(10)) / 10
    close(losses.hcl(z1, z2, 0.5, beta=0.0, tau_plus=0.9), clamped)


def test_hcl_reduces_to_nt_xent():
    z1, z2 = rand(7, 3, seed=8), rand(7, 3, seed=9)
    for t in (0.1, 0.5):
        close(losses.hcl(z1, z2, t, beta=0.0, tau_plus=0.0), losses.nt_xent(z1, z2, t), 1e-12)
    a = z1.clone().requires_grad_(True)
    (g_hcl,) = torch.autograd.grad(losses.hcl(a, z2, 0.5, beta=0.0, tau_plus=0.0), a)
    (g_nt,) = torch.autograd.grad(losses.nt_xent(a, z2, 0.5), a)
    assert torch.allclose(g_hcl, g_nt, atol=1e-12)


def test_new_contrastive_losses_run_in_float32_on_bf16_inputs():
    z1, z2 = rand(8, 16, seed=1).bfloat16(), rand(8, 16, seed=2).bfloat16()
    labels = torch.arange(8).repeat(2)
    for value in (losses.hcl(z1, z2), losses.supcon(torch.cat([z1, z2]), labels)):
        assert value.dtype == torch.float32 and torch.isfinite(value)


def test_hcl_float32_small_temperature_finite_and_rejects_bad_tau():
    z1, z2 = rand(8, 16, seed=1, dtype=torch.float32), rand(8, 16, seed=2, dtype=torch.float32)
    assert torch.isfinite(losses.hcl(z1, z2, temperature=0.05))
    with pytest.raises(ValueError, match="tau_plus"):
        losses.hcl(z1, z2, tau_plus=1.0)


# --------------------------------------------------------------------------------------------
# MoCHi


def test_mochi_mixes_are_unit_vectors_of_two_hardest_queue_entries():
    d = 12
    queue = torch.eye(d, dtype=torch.float64)          # entry e_i: a mix's coordinates name it
    q = rand(3, d, seed=10).abs() + 0.1
    n_hard, s, s_prime = 4, 6, 5
    out = mochi.mochi_negatives(q, queue, n_hard, s, s_prime,
                                generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, s + s_prime, d) and not out.requires_grad
    assert torch.allclose(out.norm(dim=-1), torch.ones(3, s + s_prime, dtype=torch.float64))
    qn = F.normalize(q, dim=1)
    for n in range(3):
        hardest = set(torch.argsort(qn[n], descending=True)[:n_hard].tolist())
        for h in out[n, :s]:
            support = torch.nonzero(h > 1e-12).flatten().tolist()
            assert len(support) == 2 and set(support) <= hardest
            assert torch.count_nonzero(h.abs() > 1e-12) == 2
        for h in out[n, s:]:
            # h ~ b q + (1 - b) e_j: away from j it is proportional to q, at j it has extra mass.
            fits = []
            for j in hardest:
                others = [c for c in range(d) if c != j]
                lam = float(h[others] @ qn[n, others] / (qn[n, others] @ qn[n, others]))
                residual = (h[others] - lam * qn[n, others]).abs().max()
                r = float(h[j] - lam * qn[n, j])
                if residual < 1e-9 and r > 0:
                    fits.append(lam / (lam + r))
            assert len(fits) == 1 and 0.0 <= fits[0] < 0.5


def test_mochi_is_reproducible_and_validates():
    q, queue = rand(4, 8, seed=1), rand(32, 8, seed=2)
    a = mochi.mochi_negatives(q, queue, 8, 3, 2, generator=torch.Generator().manual_seed(5))
    b = mochi.mochi_negatives(q, queue, 8, 3, 2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="n_hard"):
        mochi.mochi_negatives(q, queue, 1, 3, 2)


def test_info_nce_with_negatives_matches_loop_and_info_nce():
    q, k, queue = rand(3, 4, seed=1), rand(3, 4, seed=2), rand(5, 4, seed=3)
    extra = rand(3, 2, 4, seed=4)
    t = 0.2
    expected = 0.0
    for n in range(3):
        qn = unit(q[n])
        logits = [dot(qn, unit(k[n]))] + [dot(qn, unit(e)) for e in queue] \
            + [dot(qn, unit(e)) for e in extra[n]]
        expected += -logits[0] / t + math.log(sum(math.exp(x / t) for x in logits))
    close(mochi.info_nce_with_negatives(q, k, queue, extra, t), expected / 3)
    empty = torch.zeros(3, 0, 4, dtype=torch.float64)
    close(mochi.info_nce_with_negatives(q, k, queue, empty, t), losses.info_nce(q, k, queue, t),
          1e-12)


# --------------------------------------------------------------------------------------------
# Memory bank (Wu et al. 2018) and PIRL


def test_memory_bank_info_nce_matches_loop_shared_and_per_sample():
    v, pos, neg = rand(3, 4, seed=1), rand(3, 4, seed=2), rand(3, 5, 4, seed=3)
    t = 0.07
    expected = 0.0
    for n in range(3):
        logits = [dot(unit(v[n]), unit(pos[n]))] + [dot(unit(v[n]), unit(e)) for e in neg[n]]
        expected += -logits[0] / t + math.log(sum(math.exp(x / t) for x in logits))
    close(memory_bank.memory_bank_info_nce(v, pos, neg, t), expected / 3)
    shared = neg[0]
    close(memory_bank.memory_bank_info_nce(v, pos, shared, t),
          memory_bank.memory_bank_info_nce(v, pos, shared.expand(3, 5, 4), t), 1e-12)


def test_memory_bank_nce_matches_loop():
    v, pos, neg = rand(2, 3, seed=4), rand(2, 3, seed=5), rand(2, 4, 3, seed=6)
    t, n_bank, z = 0.5, 100, 7.0
    m = 4
    expected = 0.0
    for n in range(2):
        def h(s):
            p = math.exp(s / t) / z
            return p / (p + m / n_bank)
        expected += -math.log(h(dot(unit(v[n]), unit(pos[n]))))
        expected += -sum(math.log(1 - h(dot(unit(v[n]), unit(e)))) for e in neg[n])
    close(memory_bank.memory_bank_nce(v, pos, neg, n_bank, t, partition=z), expected / 2)


def test_estimate_partition_and_bank_update_by_hand():
    v, neg = rand(2, 3, seed=7), rand(2, 4, 3, seed=8)
    expected = 50 * sum(math.exp(dot(unit(v[n]), unit(e)) / 0.1)
                        for n in range(2) for e in neg[n]) / 8
    close(memory_bank.estimate_partition(v, neg, 50, 0.1), expected)
    rows = F.normalize(rand(2, 3, seed=9), dim=1)
    new = memory_bank.bank_update(rows, v, momentum=0.5)
    for n in range(2):
        mixed = [0.5 * float(r) + 0.5 * x for r, x in zip(rows[n], unit(v[n]))]
        assert new[n].tolist() == pytest.approx(unit(mixed), abs=1e-12)


def test_sample_negatives_excludes_own_index_and_is_reproducible():
    idx = torch.tensor([0, 3, 4])
    a = memory_bank.sample_negatives(idx, 5, 200, generator=torch.Generator().manual_seed(1))
    b = memory_bank.sample_negatives(idx, 5, 200, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (3, 200)
    assert not bool((a == idx[:, None]).any()) and int(a.min()) >= 0 and int(a.max()) < 5
    assert set(a[0].tolist()) == {1, 2, 3, 4}
    with pytest.raises(ValueError, match="indices"):
        memory_bank.sample_negatives(torch.tensor([5]), 5, 2)


def test_pirl_loss_mixes_the_two_terms():
    vi, vt, pos = rand(3, 4, seed=1), rand(3, 4, seed=2), rand(3, 4, seed=3)
    neg = rand(6, 4, seed=4)
    for bank_size, term in ((None, lambda v: memory_bank.memory_bank_info_nce(v, pos, neg, 0.07)),
                            (1000, lambda v: memory_bank.memory_bank_nce(v, pos, neg, 1000, 0.07))):
        got = memory_bank.pirl_loss(vi, vt, pos, neg, lam=0.3, bank_size=bank_size)
        close(got, 0.3 * term(vt) + 0.7 * term(vi), 1e-12)


# --------------------------------------------------------------------------------------------
# CPC


def test_cpc_infonce_matches_loop_with_all_batch_patches_as_negatives():
    n, d, g = 2, 3, 3
    z = rand(n, d, g, g, seed=1)
    preds = [rand(n, d, g, g, seed=2), rand(n, d, g, g, seed=3)]
    keys = [(b, i, j) for b in range(n) for i in range(g) for j in range(g)]
    expected = 0.0
    for k, pred in enumerate(preds, start=1):
        terms = []
        for b in range(n):
            for i in range(g - k):
                for j in range(g):
                    scores = {key: float(pred[b, :, i, j] @ z[key[0], :, key[1], key[2]])
                              for key in keys}
                    lse = math.log(sum(math.exp(s) for s in scores.values()))
                    terms.append(lse - scores[(b, i + k, j)])
        expected += sum(terms) / len(terms)
    close(cpc.cpc_infonce(preds, z), expected / 2)


def test_cpc_infonce_rejects_too_many_offsets():
    z = rand(1, 2, 3, 3)
    with pytest.raises(ValueError, match="taller"):
        cpc.cpc_infonce([z, z, z], z)


# --------------------------------------------------------------------------------------------
# MAE and inpainting


def test_mae_loss_matches_hand_computation_on_masked_patches_only():
    pred = rand(2, 4, 6, seed=1).requires_grad_(True)
    target = rand(2, 4, 6, seed=2)
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    for norm_pix in (True, False):
        expected, count = 0.0, 0
        for n in range(2):
            for p in range(4):
                if mask[n, p] == 0:
                    continue
                t = [float(x) for x in target[n, p]]
                if norm_pix:
                    mu = sum(t) / 6
                    var = sum((x - mu) ** 2 for x in t) / 5
                    t = [(x - mu) / math.sqrt(var + 1e-6) for x in t]
                expected += sum((float(a) - b) ** 2 for a, b in zip(pred.detach()[n, p], t)) / 6
                count += 1
        close(reconstruction.mae_loss(pred, target, mask, norm_pix=norm_pix), expected / count)
    loss = reconstruction.mae_loss(pred, target, mask)
    (grad,) = torch.autograd.grad(loss, pred)
    assert torch.all(grad[mask == 0] == 0) and torch.all(grad[mask == 1].abs().sum(-1) > 0)


def test_inpainting_loss_only_sees_removed_pixels():
    pred = rand(2, 3, 4, 4, seed=3).requires_grad_(True)
    target = rand(2, 3, 4, 4, seed=4)
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[:, :, 1:3, 1:3] = True
    expected = ((pred.detach() - target)[:, :, 1:3, 1:3] ** 2).sum() / (2 * 3 * 4)
    loss = reconstruction.inpainting_loss(pred, target, mask)
    close(loss, expected)
    (grad,) = torch.autograd.grad(loss, pred)
    assert torch.all(grad.masked_select(~mask.expand_as(grad)) == 0)


# --------------------------------------------------------------------------------------------
# Colorization


def test_soft_encoding_uses_five_nearest_bins_with_gaussian_weights():
    bins = col.ab_bins(dtype=torch.float64)
    ab = torch.tensor([[3.3, -17.9], [41.0, 12.2], [0.4, 1.3]], dtype=torch.float64).T
    idx, w = col.soft_encode(ab.reshape(1, 2, 1, 3), bins, neighbours=5, sigma=5.0)
    assert idx.shape == (1, 5, 1, 3)
    for p in range(3):
        a, b = float(ab[0, p]), float(ab[1, p])
        d2 = [(a - float(c[0])) ** 2 + (b - float(c[1])) ** 2 for c in bins]
        nearest = sorted(range(len(d2)), key=d2.__getitem__)[:5]
        raw = [math.exp(-d2[q] / 50.0) for q in nearest]
        assert sorted(idx[0, :, 0, p].tolist()) == sorted(nearest)
        expected = dict(zip(nearest, [r / sum(raw) for r in raw]))
        for q, weight in zip(idx[0, :, 0, p].tolist(), w[0, :, 0, p].tolist()):
            assert weight == pytest.approx(expected[q], abs=1e-12)
    dense = col.soft_encode_dense(idx, w, bins.shape[0])
    assert torch.allclose(dense.sum(dim=1), torch.ones(1, 1, 3, dtype=torch.float64))


def test_rebalance_weights_and_loss_match_hand_computation():
    bins = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=torch.float64)
    counts = torch.tensor([6.0, 3.0, 1.0], dtype=torch.float64)
    lam, sigma = 0.5, 5.0
    p = [c / 10 for c in counts.tolist()]
    g = [[math.exp(-((float(a[0]) - float(b[0])) ** 2 + (float(a[1]) - float(b[1])) ** 2)
                   / (2 * sigma ** 2)) for b in bins] for a in bins]
    smooth = [sum(g[q][r] * p[r] for r in range(3)) for q in range(3)]
    smooth = [s / sum(smooth) for s in smooth]
    raw = [1 / ((1 - lam) * s + lam / 3) for s in smooth]
    scale = sum(s * r for s, r in zip(smooth, raw))
    expected_w = [r / scale for r in raw]
    w = col.rebalance_weights(counts, bins, lam=lam, sigma=sigma)
    assert w.tolist() == pytest.approx(expected_w, abs=1e-12)
    assert float((w * torch.tensor(smooth, dtype=torch.float64)).sum()) == pytest.approx(1.0)

    ab = torch.tensor([[2.0, 1.0], [9.0, 4.0]], dtype=torch.float64).T.reshape(1, 2, 1, 2)
    idx, sw = col.soft_encode(ab, bins, neighbours=2, sigma=sigma)
    logits = rand(1, 3, 1, 2, seed=11)
    expected = 0.0
    for pix in range(2):
        lse = math.log(sum(math.exp(float(logits[0, q, 0, pix])) for q in range(3)))
        ce = -sum(float(sw[0, k, 0, pix]) * (float(logits[0, int(idx[0, k, 0, pix]), 0, pix]) - lse)
                  for k in range(2))
        expected += expected_w[int(idx[0, 0, 0, pix])] * ce   # weight of the nearest bin
    close(col.colorization_loss(logits, idx, sw, w), expected / 2)
    assert int(idx[0, 0, 0, 0]) == 0 and int(idx[0, 0, 0, 1]) == 1


def test_bin_counts_and_rebalance_validation():
    bins = col.ab_bins(dtype=torch.float64)
    ab = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 30.0]], dtype=torch.float64).reshape(1, 2, 1, 3)
    counts = col.bin_counts(ab, bins)
    assert float(counts.sum()) == 3 and float(counts.max()) == 2
    with pytest.raises(ValueError, match="positive total"):
        col.rebalance_weights(torch.zeros(bins.shape[0]), bins)


def test_annealed_mean_extremes():
    bins = col.ab_bins(dtype=torch.float64)
    logits = torch.zeros(1, bins.shape[0], 1, 1, dtype=torch.float64)
    assert col.annealed_mean(logits, bins)[0, :, 0, 0].tolist() == pytest.approx(
        bins.mean(dim=0).tolist(), abs=1e-5)
    logits[0, 7] = 50.0
    assert col.annealed_mean(logits, bins)[0, :, 0, 0].tolist() == pytest.approx(
        bins[7].tolist(), abs=1e-4)
