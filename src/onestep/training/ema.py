"""The exponential moving average of the student's parameters: the weights a training returns and saves."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Exponential moving average of a module's parameters (decay per optimiser step)."""

    def __init__(self, net: nn.Module, decay: float):
        self.decay = decay
        self.shadow = copy.deepcopy(net).eval().requires_grad_(False)
        self._shadow = list(self.shadow.parameters())  # loads copy into these tensors in place: built once

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        """shadow <- shadow + (1 - decay) (net - shadow), every tensor in one multi-tensor call (a few
        kernel launches on CUDA instead of one per parameter tensor)."""
        torch._foreach_lerp_(self._shadow, list(net.parameters()), 1.0 - self.decay)
