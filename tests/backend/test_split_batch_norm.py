"""Split batch norm: one pass equals plain batch norm run on each group of interleaved rows."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from backend.methods.components import grouped_forward, split_bn_forward
from backend.models.split_batch_norm import (SplitBatchNorm2d, all_split, bn_groups,
                                             convert_to_split_bn)


def _net(bn_cls=nn.BatchNorm2d):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), bn_cls(6), nn.ReLU(), nn.Flatten(),
                        nn.Linear(6 * 4 * 4, 5), nn.BatchNorm1d(5))
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return net


@pytest.mark.parametrize("groups", [2, 4])
def test_one_pass_equals_plain_batch_norm_per_group_of_interleaved_rows(groups):
    plain = _net()
    split = convert_to_split_bn(copy.deepcopy(plain))
    assert isinstance(split[1], SplitBatchNorm2d) and all_split([split]) and not all_split([plain])
    x = torch.randn(16, 3, 4, 4)
    x_split = x.clone().requires_grad_(True)
    with bn_groups([split], groups):
        out = split(x_split)
    assert split[1].groups == 1  # restored after the block

    x_plain = x.clone().requires_grad_(True)
    refs = [copy.deepcopy(plain) for _ in range(groups)]
    expected = torch.empty_like(out)
    for g, ref in enumerate(refs):  # group g = rows g, g + groups, g + 2 * groups, ...
        expected[g::groups] = ref(x_plain[g::groups])
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)

    # running statistics: the mean over the groups of what each group's plain BN recorded
    for index in (1, 5):
        for stat in ("running_mean", "running_var"):
            want = torch.stack([getattr(ref[index], stat) for ref in refs]).mean(0)
            torch.testing.assert_close(getattr(split[index], stat), want, rtol=1e-5, atol=1e-6)
        assert int(split[index].num_batches_tracked) == 1

    # gradients: inputs and the shared affine parameters (summed over the groups)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(x_split.grad, x_plain.grad, rtol=1e-4, atol=1e-5)
    for index in (1, 5):
        want = sum(ref[index].weight.grad for ref in refs)
        torch.testing.assert_close(split[index].weight.grad, want, rtol=1e-4, atol=1e-5)


def test_eval_and_one_group_are_plain_batch_norm_and_the_state_dict_is_unchanged():
    plain = _net()
    split = convert_to_split_bn(copy.deepcopy(plain))
    assert split.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(8, 3, 4, 4)
    torch.testing.assert_close(split(x), plain(x))  # groups = 1 in training
    split.eval(), plain.eval()
    with bn_groups([split], 4):
        torch.testing.assert_close(split(x), plain(x))
    plain.load_state_dict(split.state_dict())  # checkpoints load into the plain network


def test_uneven_batches_are_refused_with_the_sizes():
    split = convert_to_split_bn(_net())
    with bn_groups([split], 3), pytest.raises(ValueError, match="16 rows does not split into 3"):
        split(torch.randn(16, 3, 4, 4))


def test_grouped_forward_one_pass_matches_the_chunked_fallback_on_the_same_groups():
    """The one-pass path (split BN) and the fallback (one forward per chunk) give every row the
    statistics of its own group: rows arranged so the interleaved groups are the chunks agree."""
    plain = _net()
    split = convert_to_split_bn(copy.deepcopy(plain))
    x = torch.randn(32, 3, 4, 4)
    interleaved = x.view(4, 8, 3, 4, 4).transpose(0, 1).reshape(32, 3, 4, 4)  # chunk c -> rows c::4
    one_pass = grouped_forward(split, interleaved, 4, [split])
    chunked = grouped_forward(plain, x, 4, [plain])
    torch.testing.assert_close(one_pass.view(8, 4, 5).transpose(0, 1).reshape(32, 5), chunked,
                               rtol=1e-5, atol=1e-5)


def test_shuffled_keys_come_back_in_order_and_differ_from_whole_batch_statistics():
    split = convert_to_split_bn(_net())
    x = torch.randn(32, 3, 4, 4)
    gen = torch.Generator().manual_seed(3)
    out = split_bn_forward(split, x, 4, gen, [split])
    perm = torch.randperm(32, generator=torch.Generator().manual_seed(3))
    with bn_groups([split], 4):
        manual = split(x[perm])
    torch.testing.assert_close(out[perm], manual)
    assert not torch.allclose(out, split(x), atol=1e-3)  # whole-batch BN gives other features
