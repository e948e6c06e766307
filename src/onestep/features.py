"""The feature networks the image metrics are computed in: the dataset's own classifier (FeatureNet, trained,
saved and loaded here), clean-fid's Inception, and the test suite's stand-in for it; `extractor` picks one.

The classifier's features stand in for Inception on the small datasets (digits); clean-fid's pipeline
(metrics.image_features) calls whichever extractor on [0, 255] images.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from onestep import data
from onestep.checkpoint import load_checked, save_checked
from onestep.config.sections import Evaluation
from onestep.errors import OnestepError


class FeatureError(OnestepError, RuntimeError):
    """A feature network that cannot be had: no labels for a classifier, missing weights, a refused mode."""


class FeatureNet(nn.Module):
    """Small CNN classifier for tiny images; its penultimate layer is the feature space.

    As a clean-fid feature extractor it takes (B, C, H, W) in [0, 255] at any size (clean-fid
    resizes to 299 for Inception) and pools back to the dataset's resolution.
    """

    def __init__(self, shape: tuple[int, ...], num_classes: int = 10, width: int = 64, feat_dim: int = 64):
        super().__init__()
        c, h, w = shape
        self.shape, self.res = tuple(shape), (h, w)
        self.body = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.SiLU(), nn.AdaptiveAvgPool2d(4),
            nn.Flatten(), nn.Linear(width * 16, feat_dim), nn.SiLU(),
        )
        self.head = nn.Linear(feat_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # (B, feat_dim), x in [-1, 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def as_extractor(self):
        """clean-fid feature-extractor interface: [0, 255] images -> features."""

        def extract(img: torch.Tensor) -> torch.Tensor:
            img = img.float()
            if tuple(img.shape[-2:]) != self.res:
                img = nn.functional.adaptive_avg_pool2d(img, self.res)
            if img.shape[1] != self.body[0].in_channels:
                img = img.mean(1, keepdim=True)
            with torch.no_grad():
                return self.features(img / 127.5 - 1.0)

        return extract


def train_feature_net(images: torch.Tensor, labels: torch.Tensor, steps: int = 600, seed: int = 0) -> tuple[FeatureNet, float]:
    """Train the dataset's own classifier (held-out accuracy returned)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    perm = torch.randperm(images.shape[0], generator=gen)
    n_val = images.shape[0] // 10
    val, tr = perm[:n_val], perm[n_val:]
    net = FeatureNet(tuple(images.shape[1:]), num_classes=int(labels.max()) + 1)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(steps):
        idx = tr[torch.randint(0, tr.numel(), (128,), generator=gen)]
        loss = nn.functional.cross_entropy(net(images[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = float((net(images[val]).argmax(1) == labels[val]).float().mean())
    return net.eval(), acc



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
    save_checked(path, {"kind": "features", "state_dict": net.state_dict(), "shape": list(net.shape),
                        "num_classes": net.head.out_features, "val_accuracy": val_accuracy})


def load_feature_net(features_path: str | None) -> FeatureNet:
    """The dataset's classifier (rule `features`), frozen; its SHA-256 checked (a damaged or truncated file is
    named, with what to do: delete it and re-run the target, which retrains it)."""
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
        return inception_interface(InceptionTestDouble(), Evaluation.parse(ev).fid_mode, torch.device("cpu"))
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
    return Path(Evaluation.parse(ev).inception_dir or "/tmp") / INCEPTION_FILE


def inception_extractor(ev: dict):
    """clean-fid's Inception (the paper tier) in mode evaluation.fid_mode; no download at run time:
    the weights must be in place."""
    from cleanfid.inception_torchscript import InceptionV3W

    path, mode = inception_path(ev), Evaluation.parse(ev).fid_mode
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
    if Evaluation.parse(ev).feature_net == TEST_DOUBLE and os.environ.get(TEST_DOUBLE_ENV) != "1":
        raise FeatureError(f"evaluation.feature_net: '{TEST_DOUBLE}' is the test suite's random stand-in for Inception "
                           f"(meaningless FID), refused unless {TEST_DOUBLE_ENV}=1; use 'inception'")


FEATURE_LABELS = {"classifier": "the dataset's own classifier (not Inception)", "inception": "Inception (clean-fid)",
                  TEST_DOUBLE: "TEST DOUBLE with random weights, not Inception (meaningless FID)"}


def feature_info(ev: dict) -> dict:
    """What the image metrics were computed with (metrics.json, reference.json, table caption)."""
    info = {"features": ev["feature_net"], "feature_label": FEATURE_LABELS[ev["feature_net"]]}
    if ev["feature_net"] != "classifier":
        info["fid_mode"] = Evaluation.parse(ev).fid_mode
    return info
