"""Evaluation: fixed held-out noise, reference statistics, and the scores of one set of samples.

Every run and every teacher reference row is scored on the same noise z (seed
`evaluation.noise_seed`) against the same reference sample (rule `reference`, once per dataset).
The data-vs-data floor is the same metrics between two independent data samples of the same size.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from onestep import data
from onestep.config import IMAGE_FLOOR
from onestep.errors import OnestepError
from onestep.metrics import (
    PRIMARY,
    FeatureNet,
    feature_metrics,
    gaussian_stats,
    image_features,
    points_metrics,
    train_feature_net,
)


class FeatureError(OnestepError, RuntimeError):
    pass


def kind(cfg: dict) -> str:
    return "images" if data.is_image(cfg["dataset"]) else "points"


def eval_noise(cfg: dict, shape: tuple[int, ...]) -> torch.Tensor:
    """The held-out noise every run is scored on: (N, *shape), seed evaluation.noise_seed."""
    ev = cfg["evaluation"]
    return torch.randn(ev["num_samples"], *shape, generator=torch.Generator().manual_seed(ev["noise_seed"]))


def stage_noise(cfg: dict, shape: tuple[int, ...]) -> torch.Tensor:
    """The held-out noise of the per-stage evaluation: (n, *shape), n = evaluation.stage_samples (default
    4096), from evaluation.noise_seed (as eval_noise; never a training pair's z)."""
    ev = cfg["evaluation"]
    n = ev.get("stage_samples", 4096)
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(ev["noise_seed"]))


def chunk_seed(noise_seed: int, chunk: int) -> int:
    """The seed of noise chunk j: a fixed function of (noise_seed, j)."""
    return int(np.random.SeedSequence([noise_seed, chunk]).generate_state(1, dtype=np.uint64)[0])


def noise_chunks(cfg: dict, shape: tuple[int, ...]):
    """The held-out noise in pieces (never all N x shape in memory at once). With
    `evaluation.noise_chunk: c`, noise i is row i % c of chunk i // c, drawn from seed
    chunk_seed(noise_seed, i // c): fixed per sample whatever the sampling batch size, so every method
    sees the same noise. Without it, one piece: eval_noise."""
    ev = cfg["evaluation"]
    c, n = ev.get("noise_chunk"), ev["num_samples"]
    if not c:
        yield eval_noise(cfg, shape)
        return
    for j in range(-(-n // c)):
        gen = torch.Generator().manual_seed(chunk_seed(ev["noise_seed"], j))
        yield torch.randn(min(c, n - j * c), *shape, generator=gen)  # (c, *shape)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 [0, 255] (what is saved as a PNG and what Inception sees)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 images back to floats in [-1, 1] (plots); floats pass through."""
    return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x


def generate(cfg: dict, shape: tuple[int, ...], sampler, device: str) -> torch.Tensor:
    """sampler(z) over the held-out noise chunks: points as floats, images stored as uint8 (N, C, H, W)."""
    from tqdm import tqdm

    images = data.is_image(cfg["dataset"])
    out = []
    for z in tqdm(noise_chunks(cfg, shape), desc="sampling", mininterval=5.0, disable=not images):
        x = sampler(z.to(device)).cpu()
        out.append(to_uint8(x) if images else x)
    return torch.cat(out)


def plot_samples(x: torch.Tensor, ref: dict[str, np.ndarray], path, title: str) -> None:
    """The samples' figure: the first 64 images, or every 2-D point over the reference points."""
    from onestep.report import figures as plots

    x = to_unit(x[:64]) if x.dtype == torch.uint8 else x
    plots.samples(x, path, title, torch.from_numpy(ref["x"]) if x.ndim == 2 else None)


def build_method(cfg: dict, teacher, shape: tuple[int, ...], features=None, device: str | None = None):
    """The run's method around the teacher (methods.build_method, as in training): what samples a
    trained student. `features`: the dataset's frozen feature network, offered as `ctx.features`."""
    from onestep import data, methods
    from onestep.methods.base import Context

    ctx = Context(teacher, teacher.schedule, tuple(shape), None if features is None else features.features,
                  data_std=lambda: data.std(cfg["dataset"]))
    return methods.build_method(cfg, ctx, device=device)


def sample(method, model: torch.nn.Module, z: torch.Tensor, steps: int = 1, batch_size: int = 8192) -> torch.Tensor:
    """Samples of a trained student from noise z through its method's own sampler (method-blind);
    `steps` > 1 only for methods that list it in `sample_steps`."""
    return torch.cat([method.sample(model, zb, steps) for zb in z.split(batch_size)]).cpu()


def one_step(cfg: dict, teacher, model: torch.nn.Module, z: torch.Tensor, batch_size: int = 8192,
             steps: int = 1) -> torch.Tensor:
    """`sample` for a single batch of noise (builds the method; use build_method + sample over many chunks)."""
    return sample(build_method(cfg, teacher, tuple(z.shape[1:])), model, z, steps, batch_size)


FEW_STEPS = (2, 4)  # besides one step, scored for methods whose sampler supports them


def few_steps(cfg: dict) -> tuple[int, ...]:
    """The step counts of FEW_STEPS the run's method samples with (its `sample_steps`)."""
    from onestep.methods import METHODS

    return tuple(n for n in FEW_STEPS if n in METHODS[cfg["method"]["name"]].sample_steps)


def multi_step_scores(cfg: dict, method, model: torch.nn.Module, shape: tuple[int, ...], ref: dict[str, np.ndarray],
                      features_path: str | None = None, device: str = "cpu") -> dict[str, float]:
    """{"<metric>@<n>": value} for every n in few_steps(cfg): the same noise, the method's n-step sampler."""
    out = {}
    for n in few_steps(cfg):
        x = generate(cfg, shape, lambda z, n=n: sample(method, model, z, n), device)
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


def save_feature_net(path: str | Path, net: FeatureNet, val_accuracy: float) -> None:
    """The classifier's checkpoint (what load_feature_net reads), written as checkpoints are: atomically,
    with its SHA-256 (checkpoint.save_checked)."""
    from onestep.checkpoint import save_checked

    save_checked(path, {"kind": "features", "state_dict": net.state_dict(), "shape": list(net.shape),
                        "num_classes": net.head.out_features, "val_accuracy": val_accuracy})


def load_feature_net(features_path: str | None) -> FeatureNet:
    """The dataset's classifier (rule `features`), frozen; its SHA-256 checked (a damaged or truncated file is
    named, with what to do: delete it and re-run the target, which retrains it)."""
    from onestep.checkpoint import load_checked

    if not features_path or not Path(features_path).is_file():
        raise FeatureError(f"evaluation.feature_net: classifier weights not found: {features_path}")
    ckpt = load_checked(features_path, "feature classifier")
    net = FeatureNet(tuple(ckpt["shape"]), num_classes=ckpt["num_classes"])
    net.load_state_dict(ckpt["state_dict"])
    return net.eval().requires_grad_(False)


def extractor(cfg: dict, features_path: str | None):
    """clean-fid feature extractor: the classifier from `features_path`, clean-fid's Inception, or
    (tests only) the Inception test double."""
    ev = cfg["evaluation"]
    if ev["feature_net"] == TEST_DOUBLE:
        check_test_double(ev)
        return inception_interface(InceptionTestDouble(), ev.get("fid_mode", "clean"), torch.device("cpu"))
    if ev["feature_net"] == "classifier":
        return load_feature_net(features_path).as_extractor()
    return inception_extractor(ev)


INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
FID_MODES = ("clean", "legacy_tensorflow")
TEST_DOUBLE = "test_double"
TEST_DOUBLE_ENV = "ONESTEP_ALLOW_TEST_DOUBLE"


def inception_path(ev: dict) -> Path:
    """Where the Inception weights must be: evaluation.inception_dir, else clean-fid's own cache (/tmp)."""
    return Path(ev.get("inception_dir") or "/tmp") / INCEPTION_FILE


def inception_extractor(ev: dict):
    """clean-fid's Inception (the paper tier) in mode evaluation.fid_mode; no download at run time:
    the weights must be in place."""
    from cleanfid.inception_torchscript import InceptionV3W

    path, mode = inception_path(ev), ev.get("fid_mode", "clean")
    if not path.is_file():
        raise FeatureError(
            f"evaluation.feature_net: 'inception' needs clean-fid's Inception weights {INCEPTION_FILE} at {path} "
            f"(set evaluation.inception_dir to the folder holding it; download it on a machine with internet "
            f"from {INCEPTION_URL})"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = InceptionV3W(str(path.parent), download=False, resize_inside=mode == "legacy_tensorflow").to(device).eval()
    return inception_interface(net, mode, device)


def inception_interface(net, mode: str, device: torch.device, batch_size: int = 100):
    """clean-fid's pipeline around an Inception-like net: [0, 255] images (B, C, H, W) -> features.
    clean: each image resized to 299 x 299 by clean-fid's PIL bicubic resizer first;
    legacy_tensorflow: the net resizes inside (as clean-fid does in that mode)."""
    from cleanfid.resize import build_resizer

    if mode not in FID_MODES:
        raise FeatureError(f"evaluation.fid_mode: {mode!r} is not allowed; allowed values: {', '.join(FID_MODES)}")
    resize = build_resizer(mode)

    @torch.no_grad()
    def extract(img: torch.Tensor) -> torch.Tensor:
        img = img.float().cpu()
        img = img.expand(-1, 3, -1, -1) if img.shape[1] == 1 else img  # grey -> RGB
        feats = []
        for b in img.split(batch_size):
            if mode == "clean":
                b = torch.stack([torch.from_numpy(resize(x.permute(1, 2, 0).numpy())).permute(2, 0, 1) for x in b])
            feats.append(net(b.to(device)).float().cpu())
        return torch.cat(feats)  # (B, D)

    return extract


class InceptionTestDouble(torch.nn.Module):
    """TEST DOUBLE for clean-fid's Inception, for the CPU test suite only: the same interface
    ([0, 255] images at 299 x 299, or any size in legacy_tensorflow mode -> (B, D) features) with
    fixed random weights. Its FID is meaningless; `evaluation.feature_net: test_double` is refused
    unless ONESTEP_ALLOW_TEST_DOUBLE=1 is set, and every score made with it says so."""

    dim = 64

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.proj = torch.nn.Parameter(torch.randn(3 * 16, self.dim, generator=gen) / 7.0, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.adaptive_avg_pool2d(x / 128.0 - 1.0, 4).flatten(1)  # (B, 48)
        return torch.tanh(h @ self.proj)  # (B, D)


def check_test_double(ev: dict) -> None:
    """The test double is never what a user gets by accident: it needs the env flag."""
    if ev.get("feature_net") == TEST_DOUBLE and os.environ.get(TEST_DOUBLE_ENV) != "1":
        raise FeatureError(f"evaluation.feature_net: '{TEST_DOUBLE}' is the test suite's random stand-in for Inception "
                           f"(meaningless FID), refused unless {TEST_DOUBLE_ENV}=1; use 'inception'")


FEATURE_LABELS = {"classifier": "the dataset's own classifier (not Inception)", "inception": "Inception (clean-fid)",
                  TEST_DOUBLE: "TEST DOUBLE with random weights, not Inception (meaningless FID)"}


def feature_info(ev: dict) -> dict:
    """What the image metrics were computed with (metrics.json, reference.json, table caption)."""
    info = {"features": ev["feature_net"], "feature_label": FEATURE_LABELS[ev["feature_net"]]}
    if ev["feature_net"] != "classifier":
        info["fid_mode"] = ev.get("fid_mode", "clean")
    return info


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
        floor, floor_std = over_draws(draws)
        return {"x": ref.numpy()}, {"floor": floor, "floor_std": floor_std, "floor_repeats": ev["floor_repeats"],
                                    "num_samples": n, "floor_samples": n, "kind": "points"}
    images = data.full(ds)
    ext = extractor(cfg, features_path)
    feats = image_features(images, ext)
    mu, sigma = gaussian_stats(feats)  # computed once here, reused by every score
    floor = image_floor(feats, (mu, sigma), n, ev["floor_repeats"], ev["reference_seed"])
    return ({"feats": feats, "mu": mu, "sigma": sigma, "x": images[:64].numpy()},
            {**floor, "num_samples": int(len(feats)), "kind": "images", **feature_info(ev)})


def image_floor(feats: np.ndarray, stats, n: int, repeats: int, seed: int) -> dict:
    """The images' data-vs-data floor at the runs' sample size n = evaluation.num_samples, against the runs'
    reference (every training image's features and their stored statistics `stats`), the mean and std over
    `repeats` draws:

    - floor: n images drawn WITH replacement from the reference set, scored exactly as a run's n samples. It
      is what a generator that reproduces the training images scores, and it stays a floor whatever n is
      (without replacement, n >= the set's size would draw the reference itself: FID 0).
    - floor_heldout: what a sample of the data that is not the reference scores: n draws with replacement
      from one random half of the images against the other half's features (a smaller reference, so if
      anything a little high). A generator that generalises lands near it, not near `floor`."""
    rng = np.random.default_rng(seed)
    draws = [feature_metrics(feats[rng.integers(0, len(feats), n)], feats, stats) for _ in range(repeats)]
    held = []
    for _ in range(repeats):
        perm = rng.permutation(len(feats))  # (N,): half a = the reference, half b = the "generator"
        a, b = feats[perm[: len(feats) // 2]], feats[perm[len(feats) // 2:]]
        held.append(feature_metrics(b[rng.integers(0, len(b), n)], a))
    (floor, floor_std), (heldout, heldout_std) = over_draws(draws), over_draws(held)
    return {"floor": floor, "floor_std": floor_std, "floor_heldout": heldout, "floor_heldout_std": heldout_std,
            "floor_samples": n, "floor_repeats": repeats, "floor_draws": IMAGE_FLOOR}


def over_draws(draws: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and std per metric over a floor's draws."""
    return ({k: float(np.mean([d[k] for d in draws])) for k in draws[0]},
            {k: float(np.std([d[k] for d in draws])) for k in draws[0]})


SUPPORT_MARGIN = 0.25  # evaluation.support_margin: the box's extent per coordinate is widened by this share each side


def out_of_support(x: torch.Tensor, data_x: torch.Tensor, margin: float = SUPPORT_MARGIN) -> int:
    """How many samples x (N, d) lie outside the data's bounding box widened by `margin` times its extent
    on each side (2-D: the box of the reference sample). A W2 metric such as SWD is decided by a few such
    far-off samples at large N, so every row reports their count."""
    lo, hi = data_x.min(0).values, data_x.max(0).values  # (d,)
    pad = margin * (hi - lo)
    outside = ((x < lo - pad) | (x > hi + pad)).any(1)  # (N,)
    return int(outside.sum())


def score(x: torch.Tensor, ref: dict[str, np.ndarray], cfg: dict, features_path: str | None = None) -> dict:
    """Metrics of samples x against the stored reference (points: and the count of samples outside the
    data's support, `out_of_support`)."""
    extra = {}
    if kind(cfg) == "points":
        metrics = points_metrics(x, torch.from_numpy(ref["x"]), cfg["evaluation"])
        margin = cfg["evaluation"].get("support_margin", SUPPORT_MARGIN)
        extra = {"out_of_support": out_of_support(x.flatten(1), torch.from_numpy(ref["x"]).flatten(1), margin),
                 "support_margin": margin}
    else:
        stats = (ref["mu"], ref["sigma"]) if "mu" in ref else None
        metrics = feature_metrics(image_features(x, extractor(cfg, features_path)), ref["feats"], stats)
        extra = feature_info(cfg["evaluation"])
    return {"metrics": metrics, "primary": PRIMARY[kind(cfg)], "kind": kind(cfg), "num_samples": int(x.shape[0]),
            **extra}
