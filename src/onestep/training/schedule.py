"""The learning rate at each optimiser step: linear warm-up, then constant or cosine decay."""

from __future__ import annotations

import math


def lr_at(step: int, total: int, base: float, warmup: int, schedule: str) -> float:
    """Linear warm-up, then constant or cosine decay to 1% of base."""
    if step < warmup:
        return base * (step + 1) / warmup
    if schedule == "cosine":
        frac = (step - warmup) / max(1, total - warmup)
        return base * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * frac)))
    return base
