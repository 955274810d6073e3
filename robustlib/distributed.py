"""Multi-process training (``torchrun --nproc_per_node=K``): process group, gradient averaging, synchronised
BatchNorm, and differentiable gathers for losses that couple a whole batch.

How a K-process run relates to a single-process one:

* **Data.** Every rank holds its shard of the (GPU-resident) training set: the images whose index ≡ rank (mod K).
  Each global batch is made of one equal slice of every shard, each shard permuted and augmented by its own generator
  seeded by (seed, epoch, shard). A single-process run with ``TrainConfig(data_shards=K)`` sees exactly the same
  global batches, which is what the equivalence test compares against.
* **Gradients** are averaged over ranks after every backward pass with one coalesced all-reduce — the averaging
  DistributedDataParallel performs. We call the all-reduce ourselves instead of wrapping the model in
  ``DistributedDataParallel`` because adversarial-training methods run extra forward/backward passes (the attack, with
  input gradients only) through the same model, which DDP's reducer would expect to synchronise.
* **BatchNorm** statistics are computed over the global batch (``torch.nn.SyncBatchNorm`` on GPUs; on CPU, where
  torch's SyncBatchNorm refuses to run, :class:`GlobalBatchNorm`), so batch-statistics semantics match the
  single-process run.
* Methods whose loss couples the batch (NuAT's nuclear norm of the B×K logit matrix) gather the rows of all ranks with
  :func:`gather_rows`, which is differentiable.
* Rank 0 writes checkpoints and logs; every rank computes the same per-epoch selection metrics.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env(device: torch.device | None = None) -> bool:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1).

    Uses NCCL for CUDA devices and gloo otherwise; sets the CUDA device from ``LOCAL_RANK``. Returns True when running
    distributed.
    """
    if is_initialized():
        return world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return True


def local_device(device: torch.device) -> torch.device:
    """On CUDA, the GPU of this rank (``LOCAL_RANK``); otherwise ``device``."""
    if device.type == "cuda" and is_initialized():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    return device


def all_reduce_mean_(tensors: list[torch.Tensor]) -> None:
    """Average tensors over ranks in place (one coalesced all-reduce)."""
    if world_size() == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset:offset + n].view_as(t))
        offset += n


def average_gradients(params) -> None:
    """Average ``.grad`` of ``params`` over ranks (DDP's gradient averaging); missing grads count as zero."""
    if world_size() == 1:
        return
    grads = []
    for p in params:
        if p.requires_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
    all_reduce_mean_(grads)


def broadcast_parameters(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if world_size() == 1:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, 0)


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: every rank's output depends on every rank's input, so the gradient is the
    sum of the ranks' output gradients."""

    @staticmethod
    def forward(ctx, t):
        t = t.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


class _GatherRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t):
        parts = [torch.empty_like(t) for _ in range(world_size())]
        dist.all_gather(parts, t.contiguous())
        ctx.n = t.shape[0]
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        r = rank()
        return grad[r * ctx.n:(r + 1) * ctx.n]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over ranks, differentiable; ``t`` itself when not distributed."""
    return t if world_size() == 1 else _AllReduceSum.apply(t)


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` from every rank along dim 0 (rank order), differentiably; ``t`` itself when not distributed.

    Every rank must pass the same number of rows. Each rank then computes the same batch-wide term (e.g. NuAT's
    nuclear norm of the global B×K logit matrix); its gradient with respect to a rank's rows is summed over the ranks,
    and the Trainer's gradient averaging (÷ world size) turns that back into the single-process gradient.
    """
    return t if world_size() == 1 else _GatherRows.apply(t)


def all_gather_object(obj) -> list:
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training statistics are computed over the batches of all ranks (works on CPU with gloo).

    Mean and variance come from all-reduced per-channel sums, through differentiable collectives, so the forward
    and backward passes equal those of one BatchNorm over the concatenated global batch.
    """

    def forward(self, x):
        if not (self.training and world_size() > 1):
            return super().forward(x)
        all_reduce = all_reduce_sum
        dims = [0] + list(range(2, x.ndim))
        c = x.shape[1]
        shape = [1, c] + [1] * (x.ndim - 2)
        n_local = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
        first = all_reduce(torch.cat([x.sum(dims), n_local]))
        n = first[-1]
        mean = first[:c] / n
        # two passes (as native BatchNorm): E[(x − mean)²] is accurate where E[x²] − mean² cancels
        var = all_reduce(((x - mean.view(shape)) ** 2).sum(dims)) / n
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
        return y


def convert_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Make every BatchNorm compute global-batch statistics: SyncBatchNorm on GPUs, GlobalBatchNorm elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    from .models.norm import replace_batchnorm

    def to_global(bn: _BatchNorm) -> nn.Module:
        g = GlobalBatchNorm(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        g.load_state_dict(bn.state_dict())
        return g.to(next(iter(bn.state_dict().values())).device if bn.state_dict() else device)

    replace_batchnorm(model, to_global, lambda name, bn: type(bn) in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))
    return model


__all__ = ["is_initialized", "rank", "world_size", "is_main", "init_from_env", "average_gradients",
           "broadcast_parameters", "gather_rows", "all_gather_object", "barrier", "GlobalBatchNorm",
           "convert_batchnorm", "all_reduce_mean_", "local_device"]
