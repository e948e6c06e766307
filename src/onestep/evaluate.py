"""Evaluation: fixed held-out noise, reference statistics, and the scores of one set of samples.

Every run and every teacher reference row is scored on the same noise z (seed
`evaluation.noise_seed`) against the same reference sample (rule `reference`, once per dataset).
The data-vs-data floor is the same metrics between two independent data samples of the same size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from onestep import data
from onestep.metrics import (
    PRIMARY,
    FeatureNet,
    feature_metrics,
    image_features,
    points_metrics,
    train_feature_net,
)


class FeatureError(RuntimeError):
    pass


def kind(cfg: dict) -> str:
    return "images" if data.is_image(cfg["dataset"]) else "points"


def eval_noise(cfg: dict, shape: tuple[int, ...]) -> torch.Tensor:
    """The held-out noise every run is scored on: (N, *shape), seed evaluation.noise_seed."""
    ev = cfg["evaluation"]
    return torch.randn(ev["num_samples"], *shape, generator=torch.Generator().manual_seed(ev["noise_seed"]))


def one_step(cfg: dict, teacher, model: torch.nn.Module, z: torch.Tensor, batch_size: int = 8192,
             steps: int = 1) -> torch.Tensor:
    """Samples of a trained student from noise z through its method's own sampler (method-blind);
    `steps` > 1 only for methods that list it in `sample_steps`."""
    from onestep.methods import METHODS
    from onestep.methods.base import Context

    ctx = Context(teacher, teacher.schedule, tuple(z.shape[1:]))
    method = METHODS[cfg["method"]["name"]](cfg["method"], ctx, cfg["seed"])
    return torch.cat([method.sample(model, zb, steps) for zb in z.split(batch_size)]).cpu()


FEW_STEPS = (2, 4)  # besides one step, scored for methods whose sampler supports them


def few_steps(cfg: dict) -> tuple[int, ...]:
    """The step counts of FEW_STEPS the run's method samples with (its `sample_steps`)."""
    from onestep.methods import METHODS

    return tuple(n for n in FEW_STEPS if n in METHODS[cfg["method"]["name"]].sample_steps)


def multi_step_scores(cfg: dict, teacher, model: torch.nn.Module, z: torch.Tensor, ref: dict[str, np.ndarray],
                      features_path: str | None = None) -> dict[str, float]:
    """{"<metric>@<n>": value} for every n in few_steps(cfg): the same noise, the method's n-step sampler."""
    out = {}
    for n in few_steps(cfg):
        x = one_step(cfg, teacher, model, z, steps=n)
        out |= {f"{k}@{n}": v for k, v in score(x, ref, cfg, features_path)["metrics"].items()}
    return out


def fit_features(cfg: dict) -> tuple[FeatureNet, float]:
    """The dataset's own classifier (digits); its features stand in for Inception."""
    ds = cfg["dataset"]
    if ds["name"] != "digits":
        raise FeatureError(
            f"evaluation.feature_net: 'classifier' needs labels, which only the digits dataset ships; "
            f"use 'inception' for dataset '{ds['name']}'"
        )
    return train_feature_net(data.load_digits_images(), data.load_digits_labels(), cfg["evaluation"]["feature_steps"])


def extractor(cfg: dict, features_path: str | None):
    """clean-fid feature extractor: the classifier from `features_path`, or clean-fid's Inception."""
    if cfg["evaluation"]["feature_net"] == "classifier":
        if not features_path or not Path(features_path).is_file():
            raise FeatureError(f"evaluation.feature_net: classifier weights not found: {features_path}")
        ckpt = torch.load(features_path, map_location="cpu", weights_only=False)
        net = FeatureNet(tuple(ckpt["shape"]), num_classes=ckpt["num_classes"])
        net.load_state_dict(ckpt["state_dict"])
        return net.eval().as_extractor()
    return inception_extractor()


def inception_extractor():
    """clean-fid's Inception (the paper tier); no download at run time: the weights must be in place."""
    import os

    from cleanfid.features import build_feature_extractor

    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "inception-2015-12-05.pt")
    if not os.path.isfile(path):
        raise FeatureError(
            f"evaluation.feature_net: 'inception' needs clean-fid's Inception weights at {path} "
            "(download inception-2015-12-05.pt on a machine with internet and place it there)"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return build_feature_extractor("clean", device, use_dataparallel=False)


def reference(cfg: dict, features_path: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Reference sample (points) or reference features (images), and the data-vs-data floor."""
    ev, ds = cfg["evaluation"], cfg["dataset"]
    n = ev["num_samples"]
    if kind(cfg) == "points":
        ref = data.sample(ds, n, ev["reference_seed"])
        # The floor is the mean over independent data samples of the same size: one draw is noisy
        # (SWD between two 4096-point checkerboard samples varies by +-20% from draw to draw).
        draws = [points_metrics(data.sample(ds, n, ev["reference_seed"] + 1 + i), ref, ev)
                 for i in range(ev["floor_repeats"])]
        floor = {k: float(np.mean([d[k] for d in draws])) for k in draws[0]}
        floor_std = {k: float(np.std([d[k] for d in draws])) for k in draws[0]}
        return {"x": ref.numpy()}, {"floor": floor, "floor_std": floor_std, "floor_repeats": ev["floor_repeats"],
                                    "num_samples": n, "kind": "points"}
    images = data.full(ds)
    ext = extractor(cfg, features_path)
    feats = image_features(images, ext)
    perm = np.random.default_rng(ev["reference_seed"]).permutation(len(feats))
    half = len(feats) // 2
    floor = feature_metrics(feats[perm[:half]], feats[perm[half:]])
    return ({"feats": feats, "x": images[:64].numpy()},
            {"floor": floor, "num_samples": int(len(feats)), "floor_samples": half, "kind": "images"})


def score(x: torch.Tensor, ref: dict[str, np.ndarray], cfg: dict, features_path: str | None = None) -> dict:
    """Metrics of samples x against the stored reference."""
    if kind(cfg) == "points":
        metrics = points_metrics(x, torch.from_numpy(ref["x"]), cfg["evaluation"])
    else:
        metrics = feature_metrics(image_features(x, extractor(cfg, features_path)), ref["feats"])
    return {"metrics": metrics, "primary": PRIMARY[kind(cfg)], "kind": kind(cfg), "num_samples": int(x.shape[0])}
