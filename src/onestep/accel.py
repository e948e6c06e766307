"""GPU training helpers: precision, torch.compile, channels-last, gradient accumulation, memory.

All read from a training section (`teacher` or `student`):

    precision: fp32 | bf16 | auto      autocast dtype of the forward passes; master weights stay fp32.
                                       auto = bf16 where the device has it (CUDA with bf16), else fp32
    compile: false | true              torch.compile the trained network's forward
    channels_last: false | true        channels-last memory format for 4-D (image) inputs, on CUDA only
                                       (on CPU it slows GroupNorm-heavy UNets down, so it is ignored there)
    grad_accum: 1                      micro-batches per optimiser step; batch_size is the global batch

The defaults (fp32, no compile, contiguous, grad_accum 1) leave the CPU computation unchanged.
A method whose loss needs fp32 throughout (JVP-based ones) sets the class attribute
`fp32_only = True`; the trainer reads it generically and ignores `precision` then.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "auto")


def resolve_precision(device: str | torch.device, precision: str = "fp32", fp32_only: bool = False) -> str:
    """fp32 or bf16 for this device: `auto` picks bf16 on CUDA devices that support it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: {precision!r} is not allowed; allowed values: {', '.join(PRECISIONS)}")
    if fp32_only or precision == "fp32":
        return "fp32"
    on_cuda = torch.device(device).type == "cuda"
    if precision == "auto":
        return "bf16" if on_cuda and torch.cuda.is_bf16_supported() else "fp32"
    return "bf16"


def precision_context(device: str | torch.device, precision: str):
    """autocast(bf16) around the forward passes, or a no-op context for fp32."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def maybe_compile(net: nn.Module, enabled: bool) -> nn.Module:
    """torch.compile(net) sharing its parameters (save, EMA and state_dict use `net` itself)."""
    return torch.compile(net) if enabled else net


def use_channels_last(device: str | torch.device, enabled: bool) -> bool:
    return bool(enabled) and torch.device(device).type == "cuda"


def memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def prepare_net(net: nn.Module, shape: tuple[int, ...], channels_last: bool) -> nn.Module:
    """channels-last weights for image networks when asked (in place; returns net)."""
    return net.to(memory_format=torch.channels_last) if channels_last and len(shape) == 3 else net


def micro_slices(batch_size: int, grad_accum: int) -> list[slice]:
    """The micro-batches of one optimiser step: grad_accum equal slices of the global batch."""
    if grad_accum < 1 or batch_size % grad_accum:
        raise ValueError(f"grad_accum: {grad_accum} must divide batch_size {batch_size}")
    m = batch_size // grad_accum
    return [slice(i * m, (i + 1) * m) for i in range(grad_accum)]


def reset_memory(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def memory_stats(device: str | torch.device) -> dict[str, float]:
    """Peak GPU memory since the last reset (GiB); empty off CUDA."""
    if torch.device(device).type != "cuda":
        return {}
    return {"gpu_max_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30,
            "gpu_max_reserved_gib": torch.cuda.max_memory_reserved(device) / 2**30}


def synchronize(device: str | torch.device) -> None:
    """Wait for queued kernels (honest wall times on CUDA)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
