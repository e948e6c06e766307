"""A pretrained diffusers DDPM as the teacher (`teacher.pretrained: <dir>`), e.g. google/ddpm-cifar10-32.

The directory is what `UNet2DModel.save_pretrained` + `DDPMScheduler.save_pretrained` write (the
layout of google/ddpm-cifar10-32: config.json, diffusion_pytorch_model.safetensors and
scheduler_config.json side by side; a `unet/` + `scheduler/` pipeline layout is read as well).
`import_teacher` turns it into the pipeline's own teacher checkpoint (checkpoint.save_checkpoint), so
pairs, training and evaluation cannot tell an imported teacher from a trained one:

- the network is nets.UNet (`unet2d`) with the pretrained UNet2DModel's config and weights;
- the schedule must be the scheduler's: its betas are checked against the `diffusion` section
  (Schedule.from_config), and a mismatch names the key, since every rule reads `diffusion`.
Nothing is downloaded: the directory must be on disk.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from onestep.diffusion import Schedule
from onestep.errors import OnestepError
from onestep.nets import UNet

KEY = "teacher.pretrained"


class PretrainedError(OnestepError, ValueError):
    pass


def _parts(path: Path) -> tuple[Path, Path]:
    """(unet dir, scheduler dir): the flat layout or a pipeline's unet/ and scheduler/ subfolders."""
    if not path.is_dir():
        raise PretrainedError(f"{KEY}: folder not found: {path} (a diffusers UNet2DModel + DDPMScheduler directory, "
                              "e.g. google/ddpm-cifar10-32 downloaded beforehand)")
    if (path / "unet" / "config.json").is_file():
        return path / "unet", path / "scheduler"
    if not (path / "config.json").is_file():
        raise PretrainedError(f"{KEY}: {path} holds no config.json (UNet2DModel.save_pretrained writes one)")
    return path, path


def load(path: str | Path):
    """(UNet2DModel, DDPMScheduler) from a local diffusers directory; errors name teacher.pretrained."""
    from diffusers import DDPMScheduler, UNet2DModel

    unet_dir, sched_dir = _parts(Path(path))
    if not (sched_dir / "scheduler_config.json").is_file():
        raise PretrainedError(f"{KEY}: no scheduler_config.json in {sched_dir} (DDPMScheduler.save_pretrained writes one)")
    try:
        unet = UNet2DModel.from_pretrained(unet_dir, local_files_only=True)
        sched = DDPMScheduler.from_pretrained(sched_dir, local_files_only=True)
    except (OSError, ValueError) as e:
        raise PretrainedError(f"{KEY}: cannot load a UNet2DModel + DDPMScheduler from {path} ({e})") from e
    return unet.eval(), sched


def diffusion_section(sched) -> dict:
    """The scheduler as the pipeline's `diffusion` config section."""
    c = sched.config
    if c.get("prediction_type", "epsilon") != "epsilon":
        raise PretrainedError(f"{KEY}: the scheduler predicts {c['prediction_type']!r}; the teacher must predict epsilon")
    if c.get("trained_betas") is not None:
        raise PretrainedError(f"{KEY}: schedulers with trained_betas are not supported (diffusion.beta_schedule)")
    return {"T": int(c["num_train_timesteps"]), "beta_schedule": c["beta_schedule"],
            "beta_start": float(c["beta_start"]), "beta_end": float(c["beta_end"])}


def check_schedule(diffusion: dict, sched) -> None:
    """The config's `diffusion` section must give the scheduler's betas (every rule reads it)."""
    want = diffusion_section(sched)
    for k, v in want.items():
        have = diffusion.get(k)
        if have is None or (have != v if isinstance(v, str | int) else abs(float(have) - v) > 1e-12):
            raise PretrainedError(f"diffusion.{k}: {have!r} in the config, but the pretrained scheduler in {KEY} "
                                  f"has {v!r}; set diffusion.{k}: {v}")
    betas = Schedule.from_config(diffusion).betas[1:].double()
    if not torch.allclose(betas, sched.betas.double().to(betas.dtype), rtol=0, atol=1e-7):
        raise PretrainedError(f"diffusion: the config's betas differ from the pretrained scheduler's in {KEY}")


def net_config(unet) -> dict:
    """nets.build_net config ({"name": "unet2d", ...}) that rebuilds this UNet2DModel exactly."""
    from diffusers import UNet2DModel

    allowed = set(inspect.signature(UNet2DModel.__init__).parameters) - {"self", "sample_size", "in_channels", "out_channels"}
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in unet.config.items() if k in allowed}
    return {"name": "unet2d", **cfg}


def import_teacher(path: str | Path, cfg: dict, shape: tuple[int, ...]) -> tuple[UNet, dict]:
    """(nets.UNet with the pretrained weights, its net config), checked against the data shape and
    the `diffusion` section."""
    unet, sched = load(path)
    check_schedule(cfg["diffusion"], sched)
    c = unet.config
    size = c["sample_size"] if isinstance(c["sample_size"], list | tuple) else (c["sample_size"],) * 2
    have = (c["in_channels"], *size)
    if c["in_channels"] != c["out_channels"] or tuple(shape) != have:
        raise PretrainedError(f"{KEY}: the UNet takes {have} (in_channels, sample_size) but dataset "
                              f"images are {tuple(shape)}")
    ncfg = net_config(unet)
    net = UNet(tuple(shape), **{k: v for k, v in ncfg.items() if k != "name"})
    net.unet.load_state_dict(unet.state_dict())
    return net.eval(), ncfg
