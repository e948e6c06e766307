"""Budgets are counted, not asserted: optimiser steps, student forward / backward passes, teacher evaluations."""

import torch
from conftest import context

from onestep.config import Student
from onestep.methods.base import Batch, MethodBase
from onestep.nets import build_net
from onestep.training.loop import fit


class Toy(MethodBase):
    """Per step: one teacher evaluation, one student pass with gradients, one EMA target pass without."""

    total_steps = 7

    def __init__(self, ctx):
        self.ctx = ctx

    def loss(self, student, batch: Batch, step, gen):
        t = torch.full((batch.z.shape[0],), 500)
        with torch.no_grad():
            target = self.ctx.ema(batch.z, t) + self.ctx.teacher.eps(batch.z, t)
        return ((student(batch.z, t) - target) ** 2).sum(1), {}

    def sample(self, student, z, steps=1):
        return student(z, torch.zeros(z.shape[0]))


def test_budget_counters_on_a_toy_method():
    ctx = context()
    net = build_net({"name": "mlp", "width": 16, "depth": 1, "temb_dim": 8}, (2,))
    section = Student.filled({"batch_size": 8, "lr": 1e-3, "ema": 0.9, "log_every": 7, "grad_accum": 2})
    pairs = {"z": torch.randn(64, 2), "x0": torch.randn(64, 2)}
    _, summary = fit({"dataset": {"name": "checkerboard"}}, section, Toy(ctx), ctx, net, 0, "cpu",
                     lambda *a, **k: None, pairs=pairs, progress=False)
    assert summary["steps"] == 7
    assert summary["teacher_evals"] == 7 * 8
    assert summary["student_backwards"] == 7 * 8  # micro-batches of 4, twice a step: the same count
    assert summary["student_forwards"] == 2 * 7 * 8  # plus the EMA copy's target passes
    assert not net._forward_hooks  # the counters leave the network as they found it
