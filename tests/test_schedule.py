"""The DDPM schedule computed without diffusers: bit for bit diffusers' DDPMScheduler betas and alphas_cumprod on
every shipped beta_schedule, and a job that only needs the schedule never imports diffusers."""

import subprocess
import sys

import pytest
import torch

from onestep.diffusion import BETAS, Schedule, alphas_cumprod, ddpm_betas, ddpm_scheduler


@pytest.mark.parametrize("schedule", sorted(BETAS))
@pytest.mark.parametrize(("T", "start", "end"), [(1000, 1e-4, 0.02), (50, 1e-3, 0.2), (4000, 8.5e-4, 0.012)])
def test_betas_and_abar_equal_diffusers_bit_for_bit(schedule, T, start, end):
    cfg = {"T": T, "beta_schedule": schedule, "beta_start": start, "beta_end": end}
    ref = ddpm_scheduler(cfg)
    assert ddpm_betas(cfg).dtype == torch.float32 and torch.equal(ddpm_betas(cfg), ref.betas)
    assert torch.equal(alphas_cumprod(cfg), ref.alphas_cumprod)
    s = Schedule.from_config(cfg)
    assert s.T == T and s.betas[0] == 0 and torch.equal(s.betas[1:], ref.betas.double().float())


def test_the_schedule_and_a_student_step_import_no_diffusers():
    script = """
import sys
from onestep.diffusion import Schedule
from onestep.nets import build_net
s = Schedule.from_config({"T": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02})
print(float(s.abar[-1]) < 1e-4, "diffusers" in sys.modules)
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == ["True", "False"]
