"""Same seed, same views on every device: augmentation parameters are drawn on the CPU generator,
whatever device the images live on (backend/data/augment.py)."""

from __future__ import annotations

import pytest
import torch

from backend.config import AugmentConfig
from backend.data import augment


def drawn_params(monkeypatch, device: str) -> list:
    """The ViewParams a ViewGenerator draws for a batch on ``device`` (rendering stubbed out)."""
    seen = []

    def record(images, params, out_size, **_):
        seen.append(params)
        return torch.empty(images.shape[0], 3, out_size, out_size, device=images.device)

    monkeypatch.setattr(augment, "apply_view", record)
    gen = augment.ViewGenerator(AugmentConfig(num_local_crops=2), 32)
    images = torch.zeros(8, 3, 40, 40, dtype=torch.uint8, device=device)
    gen.sample(images, generator=torch.Generator().manual_seed(7))
    monkeypatch.undo()
    return seen


def test_drawn_parameters_do_not_depend_on_the_images_device(monkeypatch):
    cpu, meta = drawn_params(monkeypatch, "cpu"), drawn_params(monkeypatch, "meta")
    assert len(cpu) == len(meta) == 4
    for a, b in zip(cpu, meta):
        for name in a.__dataclass_fields__:
            x, y = getattr(a, name), getattr(b, name)
            assert x.device.type == "cpu" and y.device.type == "cpu"   # drawn on the CPU generator
            assert torch.equal(x, y), name


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for a device generator")
def test_a_device_generator_is_refused():
    with pytest.raises(ValueError, match="CPU torch.Generator"):
        augment.sample_view_params(4, 32, 32, scale=(0.2, 1.0), ratio=(0.75, 1.33), hflip_prob=0.5,
                                   jitter_prob=0.8, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1,
                                   grayscale_prob=0.2, blur_prob=0.5, blur_sigma=(0.1, 2.0), solarize_prob=0.2,
                                   generator=torch.Generator(device="cuda"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_and_cuda_views_agree():
    gen = augment.ViewGenerator(AugmentConfig(num_local_crops=2), 32)
    images = torch.randint(0, 256, (16, 3, 40, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    cpu = gen(images, generator=torch.Generator().manual_seed(3))
    cuda = gen(images.cuda(), generator=torch.Generator().manual_seed(3))
    for a, b in zip(cpu, cuda):
        torch.testing.assert_close(b.cpu(), a, atol=1e-5, rtol=1e-5)
