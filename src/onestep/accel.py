"""GPU training helpers: precision, torch.compile, channels-last, gradient accumulation, memory.

All read from a training section (`teacher` or `student`):

    precision: fp32 | bf16 | auto      autocast dtype of the forward passes; master weights stay fp32.
                                       auto = bf16 where the device has it (CUDA with bf16), else fp32
    compile: false | true | reduce-overhead | max-autotune
                                       torch.compile the trained network's forward (a string is the
                                       compile mode: reduce-overhead captures CUDA graphs, which pays for
                                       the small 2-D nets whose steps are launch-bound)
    channels_last: false | true        channels-last memory format for 4-D (image) inputs, on CUDA only
                                       (on CPU it slows GroupNorm-heavy UNets down, so it is ignored there)
    grad_accum: 1                      micro-batches per optimiser step; batch_size is the global batch

The defaults (fp32, no compile, contiguous, grad_accum 1) leave the CPU computation unchanged.
On CUDA the optimisers are the fused Adam kernels (`adam`), one launch per step instead of one per
parameter tensor; on CPU the default implementation, so CPU results stay bit-for-bit.

Throughput is reported as model FLOPs utilisation next to samples/s (`train_flops`, `peak_tflops`,
`mfu`): the FLOPs of one training step of the network counted by torch's FlopCounterMode (forward +
backward, matmuls and convolutions), over the device's dense bf16 peak. A method's extra forward
passes (teacher evaluations, targets) are not in that count: its utilisation is a lower bound.
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


COMPILE_MODES = ("reduce-overhead", "max-autotune", "default")


def maybe_compile(net: nn.Module, enabled: bool | str) -> nn.Module:
    """torch.compile(net) sharing its parameters (save, EMA and state_dict use `net` itself); a string
    picks the compile mode (reduce-overhead: CUDA graphs)."""
    if not enabled:
        return net
    return torch.compile(net, mode=enabled) if isinstance(enabled, str) else torch.compile(net)


def adam(params, lr: float, device: str | torch.device, **kw) -> torch.optim.Adam:
    """Adam; the fused CUDA kernel on CUDA (one launch per step), the default implementation elsewhere."""
    fused = torch.device(device).type == "cuda"
    return torch.optim.Adam(params, lr=lr, **({"fused": True} if fused else {}), **kw)


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


# ---------------------------------------------------------------- running out of GPU memory


# what to lower when a job runs out of GPU memory: (the key that sets its batch, what else helps)
OOM_KEYS = {
    "teacher": ("teacher.batch_size", "or raise teacher.grad_accum (the same global batch in slices)"),
    "train": ("student.batch_size", "or raise student.grad_accum (the same global batch in slices)"),
    "tune-worker": ("student.batch_size", "or raise student.grad_accum (the same global batch in slices)"),
    "pairs": ("pairs.batch_size", "(noise solved per chunk)"),
    "teacher-eval": ("evaluation.noise_chunk", "(held-out noise sampled per chunk; null: all at once)"),
    "evaluate": ("evaluation.noise_chunk", "(held-out noise sampled per chunk; null: all at once)"),
}


def oom_message(err: BaseException, command: str, cfg: dict | None) -> str:
    """One line for a job that ran out of GPU memory: torch's first line, then the batch key to lower."""
    first = str(err).splitlines()[0] if str(err) else "CUDA out of memory"
    if command not in OOM_KEYS:
        return f"GPU out of memory ({first})"
    key, hint = OOM_KEYS[command]
    node = cfg or {}
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return f"GPU out of memory ({first}); lower {key} (now {node}) {hint}"


# ---------------------------------------------------------------- model FLOPs utilisation

# Dense bf16 tensor-core peak (TFLOP/s, no sparsity), from the vendors' data sheets; matched by name.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "GH200": 989.0, "B200": 2250.0, "A100": 312.0,
                    "L40S": 362.0, "L4": 121.0, "A10": 125.0, "RTX 4090": 165.0, "RTX 3090": 71.0}


def peak_tflops(device: str | torch.device) -> float | None:
    """The device's dense bf16 peak from PEAK_BF16_TFLOPS (None: unknown, or not a CUDA device)."""
    if torch.device(device).type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    hits = [k for k in PEAK_BF16_TFLOPS if k in name]
    return PEAK_BF16_TFLOPS[max(hits, key=len)] if hits else None


def train_flops(net: nn.Module, *inputs: torch.Tensor) -> float:
    """FLOPs of one forward + backward of `net` on `inputs`, per sample of the batch (FlopCounterMode):
    the forward, every weight gradient, and input gradients where they flow (not into the data)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        net(*inputs).float().square().mean().backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops() / inputs[0].shape[0]


def mfu(flops_per_sample: float, samples_per_s: float, peak: float | None) -> float | None:
    """Achieved FLOP/s as a fraction of `peak` TFLOP/s (None when the peak is unknown)."""
    return None if not peak else flops_per_sample * samples_per_s / (peak * 1e12)
