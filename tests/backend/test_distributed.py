"""torch.distributed on CPU with gloo and 2 ranks: gathered negatives and reductions. (Whole runs
under torchrun: test_torchrun.py, and from the GUI test_launch_gpus.py.)"""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from backend import losses
from backend.distributed import gather_with_grad
from backend.methods.components import global_center_update, global_sinkhorn

WORLD = 2


def _worker(rank, init_file, data, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        z1_all, z2_all, scores_all, teacher_all = data
        n = z1_all.shape[0] // WORLD
        mine = slice(rank * n, (rank + 1) * n)
        z1 = z1_all[mine].clone().requires_grad_(True)
        z2 = z2_all[mine].clone().requires_grad_(True)
        loss = losses.nt_xent(gather_with_grad(z1), gather_with_grad(z2), temperature=0.5)
        loss.backward()
        # Every rank backpropagates the same global loss, so the gather's backward sums WORLD
        # copies of this rank's gradient; DDP's averaging over ranks divides that again.
        g1 = z1.grad.clone() / WORLD
        codes = global_sinkhorn(scores_all[mine], epsilon=0.05, iterations=3)
        center = global_center_update(torch.zeros(1, teacher_all.shape[1]), [teacher_all[mine]], 0.9)
        torch.save({"loss": loss.detach(), "grad1": g1, "codes": codes, "center": center},
                   f"{out_file}.{rank}")
        dist.barrier()  # both ranks done before either tears gloo down (a lone teardown can abort)
    finally:
        dist.destroy_process_group()


def test_gathered_losses_and_reductions_match_single_process(tmp_path):
    torch.manual_seed(0)
    data = (torch.randn(8, 16), torch.randn(8, 16), torch.randn(8, 12), torch.randn(8, 12))
    mp.spawn(_worker, args=(str(tmp_path / "init"), data, str(tmp_path / "out")), nprocs=WORLD, join=True)
    z1 = data[0].clone().requires_grad_(True)
    single = losses.nt_xent(z1, data[1], temperature=0.5)
    single.backward()
    codes = losses.sinkhorn(data[2], epsilon=0.05, iterations=3)
    center = 0.1 * data[3].mean(0, keepdim=True)
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"out.{rank}", weights_only=True)
        rows = slice(rank * 4, rank * 4 + 4)
        assert torch.allclose(got["loss"], single.detach(), atol=1e-6)
        assert torch.allclose(got["grad1"], z1.grad[rows], atol=1e-6)
        assert torch.allclose(got["codes"], codes[rows], atol=1e-6)
        assert torch.allclose(got["center"], center, atol=1e-6)
