"""Every code path that feeds a network, run with the networks on a second device.

The CPU suite cannot see a device mismatch: on one device every tensor is on it. PyTorch's `meta`
device stands in for a GPU here. The networks, the batch and the noise go where the trainer puts
them (`meta`); any tensor a code path creates on the default device (the CPU) and hands to a network
(a scheduler's timesteps, an index grid, a time embedding) then fails exactly as it does on CUDA:
"Tensor on device meta is not on the expected device cpu" (the bug of `ddim_sample`, whose diffusers
timesteps stay on the CPU). Meta tensors carry shapes but no values, so these tests check placement
and shapes only; the numerics are tested on the CPU elsewhere.
"""

import copy

import pytest
import torch
from conftest import context, method_of
from torch import nn

from onestep.config import with_method
from onestep.diffusion import Schedule, Teacher, ddim_jump, ddim_sample
from onestep.evaluate import generate
from onestep.features import FeatureNet
from onestep.methods import METHODS, student_net
from onestep.methods.base import Batch
from onestep.methods.curriculum import BRIDGES
from onestep.nets import build_net
from onestep.training.ema import EMA

DEV = torch.device("meta")
DIFF = {"T": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}
POINTS = ((2,), {"name": "mlp", "width": 16, "depth": 1, "temb_dim": 8})
IMAGES = ((1, 8, 8), {"name": "convnet", "width": 8, "depth": 1, "temb_dim": 8})
# knob variants whose code paths differ (discriminator, global bridges, replay, perceptual features)
CURRICULUM = {
    "adjacent-ddpm": {"consistency_step": "ddpm"},
    "global": {"consistency": "global", "global_stages": 2},
    "replay": {"replay": 0.5},
    "adversarial": {"loss": "adversarial", "late_t": 1000,
                    "adversarial": {"net": {"name": "convnet", "width": 8, "depth": 1, "temb_dim": 8}}},
    "pseudo_huber": {"loss": "pseudo_huber", "late_t": 1000},
}


@pytest.fixture(scope="module")
def sch():
    return Schedule.from_config(DIFF)


def on_device(cfg: dict, name: str, shape, net_cfg: dict, sch: Schedule, features=None, **over):
    """(method, student) with the teacher, the method's own networks and the student on DEV."""
    c = with_method(cfg, {"name": name, **over})
    c = {**c, "student": {**c["student"], "net": dict(net_cfg)}}
    teacher = Teacher(build_net(net_cfg, shape).to(DEV), sch)
    method = method_of(**c["method"], ctx=context(teacher, shape, features=features, data_std=lambda: 0.5, data_bound=lambda: 1.0)).to(DEV)
    return method, build_net(student_net(c), shape).to(DEV)


def exercise(method, student, shape, n: int = 4) -> None:
    """The contract as the trainer and the evaluator call it, at the first and the last step."""
    gen = torch.Generator().manual_seed(0)
    batch = Batch(*(torch.randn(n, *shape).to(DEV) for _ in range(3)))  # z, x0, data: moved as the trainer does
    for step in sorted({0, method.total_steps - 1}):
        method.schedule(step)
        method.aux_step(student, batch, step, gen)
        loss, logs = method.loss(student, batch, step, gen)
        assert loss.shape == (n,) and loss.device == DEV
        loss.mean().backward()
        student.zero_grad(set_to_none=True)
    for steps in method.sample_steps:
        x = method.sample(student, torch.randn(n, *shape).to(DEV), steps)
        assert x.shape == (n, *shape) and x.device == DEV


@pytest.mark.parametrize("shape,net_cfg", [POINTS, IMAGES], ids=["points", "images"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_and_samples_with_its_networks_on_another_device(default_config, sch, name, shape, net_cfg):
    method, student = on_device(default_config, name, shape, net_cfg, sch)
    exercise(method, student, shape)


@pytest.mark.parametrize("variant", sorted(CURRICULUM))
def test_curriculum_knobs_on_another_device(default_config, sch, variant):
    shape, net_cfg = IMAGES
    method, student = on_device(default_config, "curriculum", shape, net_cfg, sch, K=4, steps_per_stage=2,
                                **CURRICULUM[variant])
    exercise(method, student, shape)


def test_curriculum_perceptual_features_on_another_device(default_config, sch):
    shape, net_cfg = IMAGES
    phi = FeatureNet(shape, width=8, feat_dim=8).to(DEV).eval().requires_grad_(False)
    method, student = on_device(default_config, "curriculum", shape, net_cfg, sch, features=phi.features, K=4,
                                steps_per_stage=2, loss="perceptual", late_t=1000)
    exercise(method, student, shape)


@pytest.mark.parametrize("shape,net_cfg", [POINTS, IMAGES], ids=["points", "images"])
def test_teacher_ddim_solve_on_another_device(sch, shape, net_cfg):
    """What the `pairs` and `teacher_eval` rules run: diffusers' CPU timesteps must reach the net on its device."""
    net = build_net(net_cfg, shape).to(DEV)
    x = ddim_sample(net, torch.randn(6, *shape).to(DEV), 3, DIFF, batch_size=4)
    assert x.shape == (6, *shape) and x.device == DEV


def test_teacher_bridges_on_another_device(sch):
    shape, net_cfg = POINTS
    teacher = Teacher(build_net(net_cfg, shape).to(DEV), sch)
    x = torch.randn(4, *shape).to(DEV)
    s, t = torch.tensor([1000, 500, 10, 1]).to(DEV), torch.tensor([900, 400, 0, 0]).to(DEV)
    for bridge in (*BRIDGES.values(), ddim_jump):
        assert bridge(teacher, x, s, t).device == DEV


def test_evaluation_noise_reaches_the_device_and_samples_come_back(default_config):
    """evaluate.generate (the evaluate, teacher-eval and tuning jobs): each held-out noise chunk is moved to
    the job's device before the sampler sees it, and the samples come back to the host for scoring."""
    cfg = {**default_config, "evaluation": {**default_config["evaluation"], "num_samples": 10, "noise_chunk": 4}}
    seen = []

    def sampler(z):
        seen.append(z.device)
        return torch.zeros(z.shape)  # what `sample` returns: host tensors

    x = generate(cfg, (2,), sampler, DEV)
    assert x.shape == (10, 2) and seen == [DEV] * 3


def test_ema_copy_stays_with_its_network():
    net = build_net(POINTS[1], POINTS[0]).to(DEV)
    ema = EMA(net, 0.9)
    ema.update(net)
    assert all(p.device == DEV for p in ema.shadow.parameters())


class SameDevice(nn.Module):
    """A network double that fails on any input not on its parameters' device (what CUDA does)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, *args):
        dev = next(self.net.parameters()).device
        bad = [a.device for a in args if torch.is_tensor(a) and a.device != dev]
        assert not bad, f"input on {bad[0]}, network on {dev}"
        return self.net(*args)


def test_the_check_catches_a_host_tensor():
    """The stand-in device really fails on the bug this file guards against (a CPU timestep)."""
    net = SameDevice(build_net(POINTS[1], POINTS[0]).to(DEV))
    with pytest.raises(AssertionError, match="input on cpu, network on meta"):
        net(torch.randn(3, 2).to(DEV), torch.zeros(3, dtype=torch.long))
    bare = copy.deepcopy(net.net)
    with pytest.raises((RuntimeError, NotImplementedError)):
        bare(torch.randn(3, 2).to(DEV), torch.zeros(3, dtype=torch.long))
