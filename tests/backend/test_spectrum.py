"""Spectrum diagnostics against constructed spectra: power laws, rank-r, isotropic data."""

from __future__ import annotations

import json
import math

import pytest
import torch

from backend import spectrum
from backend.errors import ConfigError
from backend.metrics import effective_rank


def orthogonal(d, seed):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q


def exact_embeddings(eigenvalues, n=512, seed=0):
    """Rows whose sample covariance has exactly ``eigenvalues``, in a random orthogonal basis."""
    d = len(eigenvalues)
    g = torch.Generator().manual_seed(seed + 1)
    raw = torch.randn(n, d, generator=g, dtype=torch.float64)
    white, _ = torch.linalg.qr(raw - raw.mean(dim=0))      # orthonormal, zero-mean columns
    white = white * math.sqrt(n - 1)                         # sample covariance = identity
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64)
    return white * lam.sqrt() @ orthogonal(d, seed).T + 3.0  # an offset the centring must remove


def power_law(d, alpha):
    return [k ** -alpha for k in range(1, d + 1)]


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_alpha_of_an_exact_power_law(alpha):
    z = exact_embeddings(power_law(64, alpha))
    fitted, fit = spectrum.alpha_req(z, return_range=True)
    assert fit == (2, 64)
    assert fitted == pytest.approx(alpha, abs=1e-6)


@pytest.mark.parametrize("alpha", [1.0, 1.5])
def test_alpha_of_sampled_gaussian_data_within_tolerance(alpha):
    d, n = 32, 20000
    g = torch.Generator().manual_seed(7)
    lam = torch.tensor(power_law(d, alpha), dtype=torch.float64)
    z = torch.randn(n, d, generator=g, dtype=torch.float64) * lam.sqrt() @ orthogonal(d, 3).T
    assert spectrum.alpha_req(z, first=2, last=24) == pytest.approx(alpha, abs=0.1)


def test_alpha_accepts_a_spectrum_and_an_explicit_range():
    lam = torch.tensor(power_law(100, 1.3))
    assert spectrum.alpha_req(lam, first=1, last=50) == pytest.approx(1.3, abs=1e-9)
    with pytest.raises(ConfigError, match="fit range"):
        spectrum.alpha_req(lam, first=10, last=101)
    with pytest.raises(ConfigError, match="sorted descending"):
        spectrum.alpha_req(lam.flip(0))


def test_collapsed_batch_has_no_alpha_but_a_record():
    z = torch.ones(16, 8) + torch.randn(16, 1) @ torch.randn(1, 8)  # rank 1 after centring
    with pytest.raises(ConfigError, match="non-negligible"):
        spectrum.alpha_req(z)
    rec = spectrum.spectrum_record(z)
    assert rec["alpha"] is None and rec["alpha_range"] is None
    assert rec["values"][0] == pytest.approx(1.0)


def test_spectrum_is_sorted_normalised_and_scale_free():
    z = exact_embeddings(power_law(16, 1.0), n=100)
    lam = spectrum.eigenspectrum(z)
    assert lam.shape == (16,) and float(lam.sum()) == pytest.approx(1.0)
    assert bool((lam[:-1] >= lam[1:]).all())
    expected = torch.tensor(power_law(16, 1.0), dtype=torch.float64)
    assert torch.allclose(lam, expected / expected.sum(), atol=1e-10)
    assert torch.allclose(spectrum.eigenspectrum(5 * z), lam, atol=1e-12)
    raw = spectrum.eigenspectrum(z, normalize=False)
    assert torch.allclose(raw, expected, atol=1e-9)


def test_isotropic_spectrum_is_flat():
    z = exact_embeddings([1.0] * 32, n=256)
    lam = spectrum.eigenspectrum(z)
    assert torch.allclose(lam, torch.full((32,), 1 / 32, dtype=torch.float64), atol=1e-10)
    assert spectrum.alpha_req(z) == pytest.approx(0.0, abs=1e-6)
    g = torch.Generator().manual_seed(0)
    sampled = spectrum.eigenspectrum(torch.randn(50000, 16, generator=g, dtype=torch.float64))
    assert float(sampled.max() / sampled.min()) < 1.1


def test_small_batch_pads_unseen_directions_with_zeros():
    g = torch.Generator().manual_seed(0)
    lam = spectrum.eigenspectrum(torch.randn(5, 12, generator=g))
    assert lam.shape == (12,) and bool((lam[4:] < 1e-12).all()) and bool((lam[:4] > 0).all())
    assert spectrum.alpha_req(torch.randn(5, 12, generator=g), return_range=True)[1] == (2, 4)


@pytest.mark.parametrize("r", [1, 3, 8])
def test_rankme_of_a_rank_r_construction(r):
    # r orthonormal directions with equal singular values: RankMe = r (Garrido et al. 2023).
    n, d = 64, 20
    g = torch.Generator().manual_seed(r)
    u, _ = torch.linalg.qr(torch.randn(n, r, generator=g, dtype=torch.float64))
    z = u @ orthogonal(d, r)[:r] * 4.0
    assert spectrum.rankme(z) == pytest.approx(r, rel=1e-4)
    assert spectrum.rankme(z) == pytest.approx(float(effective_rank(z)))


def test_record_is_compact_json_for_one_metric_event(tmp_path):
    from backend.events import EventWriter, metric_series, read_events

    z = exact_embeddings(power_law(128, 1.0), n=400)
    rec = spectrum.spectrum_record(z)
    assert rec["name"] == "spectrum" and len(rec["values"]) == 64
    assert rec["dim"] == 128 and rec["samples"] == 400 and rec["alpha_range"] == [2, 128]
    assert rec["alpha"] == pytest.approx(1.0, abs=1e-5)
    assert rec["values"] == sorted(rec["values"], reverse=True)
    assert all(isinstance(v, float) for v in rec["values"])
    w = EventWriter(tmp_path / "events.jsonl", echo=False)
    w.metric("loss", 1.0, 1, 0)
    w.emit("metric", step=1, epoch=0, **rec)
    w.close()
    (event,) = [e for e in read_events(tmp_path / "events.jsonl") if e["name"] == "spectrum"]
    assert event["values"] == rec["values"] and len(json.dumps(event)) < 2000
    assert set(metric_series(read_events(tmp_path / "events.jsonl"))) == {"loss"}  # not a curve
    assert len(spectrum.spectrum_record(z, top=8)["values"]) == 8


def test_bad_input_is_refused_clearly():
    with pytest.raises(ConfigError, match="2-D"):
        spectrum.eigenspectrum(torch.zeros(10))
    with pytest.raises(ConfigError, match="at least 2 rows"):
        spectrum.eigenspectrum(torch.zeros(1, 4))
    with pytest.raises(ConfigError, match="top"):
        spectrum.spectrum_record(torch.randn(4, 4), top=0)
    bad = torch.randn(8, 4)
    bad[0, 0] = float("nan")
    assert bool(spectrum.eigenspectrum(bad).isnan().all()) and math.isnan(spectrum.alpha_req(bad))


def test_half_precision_and_any_device_input_is_read_in_float64_on_the_cpu():
    z = exact_embeddings(power_law(32, 1.0), n=200).to(torch.bfloat16)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    lam = spectrum.eigenspectrum(z.to(device))
    assert lam.device.type == "cpu" and lam.dtype == torch.float64
    assert spectrum.alpha_req(z.to(device)) == pytest.approx(1.0, abs=0.05)  # bf16 rounding only
    assert spectrum.spectrum_record(z.to(device))["dim"] == 32
