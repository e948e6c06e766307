"""Evaluation: fixed held-out noise, samples drawn from it (one step and FEW_STEPS), reference statistics,
and the scores of one set of samples.

Every run and every teacher reference row is scored on the same noise z (seed
`evaluation.noise_seed`) against the same reference sample (rule `reference`, once per dataset).
The data-vs-data floor is the same metrics between two independent data samples of the same size.
The feature networks the image scores use are features.py's.

On 2-D data a run is also scored on the exact-density metrics (onestep.exact) of evaluation.exact_samples
one-step samples from their own noise (`exact_sample`), and its SWD on evaluation.eval_draws further (noise,
reference) draws, slices of those samples against fresh data: `eval_sd` in metrics.json holds each metric's
evaluation spread (the exact metrics' analytic one), which the tables' intervals add to the seeds'.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from onestep import data, exact, gmm_metrics
from onestep.config import IMAGE_FLOOR
from onestep.config.sections import Evaluation
from onestep.features import extractor, feature_info
from onestep.methods import build_method, context
from onestep.metrics import feature_metrics, gaussian_stats, headline, image_features, points_metrics, sliced_wasserstein

FEW_STEPS = (2, 4)  # besides one step, the step counts scored for methods whose sampler supports them
EXACT = {"gmm": gmm_metrics.scores}  # dataset name -> its exact metrics (samples, dataset section), beside the 2-D ones


def points_scores(x: torch.Tensor, ref: torch.Tensor, cfg: dict) -> dict[str, float]:
    """points_metrics, and the dataset's exact metrics where its density is known (EXACT): on data draws (the
    floor) they are the null of an exact sampler."""
    known = EXACT.get(cfg["dataset"]["name"])
    return points_metrics(x, ref, cfg["evaluation"]) | (known(x, cfg["dataset"]) if known else {})


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
    n = Evaluation.parse(ev).stage_samples
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
    c, n = Evaluation.parse(ev).noise_chunk, ev["num_samples"]
    if not c:
        yield eval_noise(cfg, shape)
        return
    for j in range(-(-n // c)):
        gen = torch.Generator().manual_seed(chunk_seed(ev["noise_seed"], j))
        yield torch.randn(min(c, n - j * c), *shape, generator=gen)  # (c, *shape)


EXACT_CHUNK, EXACT_STREAM = 65536, 1 << 20  # the exact metrics' noise: chunks j of seed chunk_seed(noise_seed, STREAM + j)


def has_exact(cfg: dict) -> bool:
    """Whether runs of this config are scored on the exact-density metrics."""
    return exact.has_exact(cfg["dataset"]["name"]) and bool(Evaluation.filled(cfg["evaluation"])["exact_samples"])


def exact_sample(cfg: dict, shape: tuple[int, ...], sampler, device: str) -> torch.Tensor | None:
    """sampler(z) over the exact metrics' own held-out noise (evaluation.exact_samples, never the tables' noise
    set nor a training pair's); None where the config has no exact metrics."""
    if not has_exact(cfg):
        return None
    ev = cfg["evaluation"]
    n, out = Evaluation.filled(ev)["exact_samples"], []
    for j in range(-(-n // EXACT_CHUNK)):
        gen = torch.Generator().manual_seed(chunk_seed(ev["noise_seed"], EXACT_STREAM + j))
        out.append(sampler(torch.randn(min(EXACT_CHUNK, n - j * EXACT_CHUNK), *shape, generator=gen).to(device)).cpu())
    return torch.cat(out)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 [0, 255] (what is saved as a PNG and what Inception sees)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 images back to floats in [-1, 1] (plots); floats pass through."""
    return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x


def generate(cfg: dict, shape: tuple[int, ...], sampler, device: str) -> torch.Tensor:
    """sampler(z) over the held-out noise chunks: points as floats, images stored as uint8 (N, C, H, W)."""
    images = data.is_image(cfg["dataset"])
    out = []
    for z in tqdm(noise_chunks(cfg, shape), desc="sampling", mininterval=5.0, disable=not images):
        x = sampler(z.to(device)).cpu()
        out.append(to_uint8(x) if images else x)
    return torch.cat(out)


def sample(method, model: torch.nn.Module, z: torch.Tensor, steps: int = 1, batch_size: int = 8192) -> torch.Tensor:
    """Samples of a trained student from noise z through its method's own sampler (method-blind);
    `steps` > 1 only for methods that list it in `sample_steps`."""
    return torch.cat([method.sample(model, zb, steps) for zb in z.split(batch_size)]).cpu()


def one_step(cfg: dict, teacher, model: torch.nn.Module, z: torch.Tensor, batch_size: int = 8192,
             steps: int = 1) -> torch.Tensor:
    """`sample` for a single batch of noise (builds the method; over many chunks build it once:
    methods.build_method(cfg, methods.context(cfg, teacher, shape)), then `sample`)."""
    return sample(build_method(cfg, context(cfg, teacher, z.shape[1:])), model, z, steps, batch_size)


def few_steps(method) -> tuple[int, ...]:
    """The step counts of FEW_STEPS the built method samples with (its `sample_steps`, which a method may set from
    its knobs, e.g. tdm's trained step counts)."""
    return tuple(n for n in FEW_STEPS if n in method.sample_steps)


def multi_step_scores(cfg: dict, method, model: torch.nn.Module, shape: tuple[int, ...], ref: dict[str, np.ndarray],
                      features_path: str | None = None, device: str = "cpu") -> dict[str, float]:
    """{"<metric>@<n>": value} for every n in few_steps(method): the same noise, the method's n-step sampler."""
    out = {}
    for n in few_steps(method):
        sampler = lambda z, n=n: sample(method, model, z, n)  # noqa: E731
        x, exact_x = generate(cfg, shape, sampler, device), exact_sample(cfg, shape, sampler, device)
        out |= {f"{k}@{n}": v for k, v in score(x, ref, cfg, features_path, exact_x, draws=False)["metrics"].items()}
    return out


def reference(cfg: dict, features_path: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Reference sample (points) or reference features (images), and the data-vs-data floor."""
    ev, ds = cfg["evaluation"], cfg["dataset"]
    n = ev["num_samples"]
    if kind(cfg) == "points":
        ref = data.sample(ds, n, ev["reference_seed"])
        # The floor is the mean over independent data samples of the same size: one draw is noisy
        # (SWD between two 4096-point checkerboard samples varies by +-20% from draw to draw).
        draws = [points_scores(data.sample(ds, n, ev["reference_seed"] + 1 + i), ref, cfg)
                 for i in range(ev["floor_repeats"])]
        floor, floor_std = over_draws(draws)
        if has_exact(cfg):  # the exact metrics' floors are analytic, at the runs' exact sample size
            ef = Evaluation.filled(ev)
            nu = exact.null(ds["name"], ef["exact_samples"], ef["exact_bins"])
            floor |= {m: nu[f"{m}_floor"] for m in exact.METRICS if f"{m}_floor" in nu}
            floor_std |= {m: nu[f"{m}_null_sd"] for m in exact.METRICS if f"{m}_null_sd" in nu}
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


SUPPORT_MARGIN = Evaluation.support_margin  # the box's extent per coordinate is widened by this share each side


def out_of_support(x: torch.Tensor, data_x: torch.Tensor, margin: float = SUPPORT_MARGIN) -> int:
    """How many samples x (N, d) lie outside the data's bounding box widened by `margin` times its extent
    on each side (2-D: the box of the reference sample). A W2 metric such as SWD is decided by a few such
    far-off samples at large N, so every row reports their count."""
    lo, hi = data_x.min(0).values, data_x.max(0).values  # (d,)
    pad = margin * (hi - lo)
    outside = ((x < lo - pad) | (x > hi + pad)).any(1)  # (N,)
    return int(outside.sum())


def exact_scores(cfg: dict, x: torch.Tensor, exact_x: torch.Tensor | None, draws: bool = True) -> dict:
    """The exact-density metrics of exact_x (x where None), the SWD of evaluation.eval_draws slices of exact_x
    against fresh data draws, and every metric's evaluation spread (`eval_sd`)."""
    ev = Evaluation.filled(cfg["evaluation"])
    xs = exact_x if exact_x is not None else x
    r = exact.exact_metrics(cfg["dataset"]["name"], xs.double().numpy(), ev["exact_bins"])
    out = {"metrics": {m: r[m] for m in exact.METRICS if m in r}, "exact": r, "eval_sd": exact.eval_sd(r)}
    n, swds = x.shape[0], []
    if exact_x is not None and draws:
        for i in range(min(ev["eval_draws"], exact_x.shape[0] // n)):
            other = data.sample(cfg["dataset"], n, ev["reference_seed"] + 1000 + i)
            swds.append(sliced_wasserstein(exact_x[i * n:(i + 1) * n], other, ev["swd_projections"]))
    return out | {"swd_draws": swds}


def score(x: torch.Tensor, ref: dict[str, np.ndarray], cfg: dict, features_path: str | None = None,
          exact_x: torch.Tensor | None = None, draws: bool = True) -> dict:
    """Metrics of samples x against the stored reference (points: the exact-density metrics of `exact_x`, see
    exact_scores, with its SWD draws unless `draws` is false, and the count of samples outside the data's
    bounding box, `out_of_support`)."""
    extra = {}
    if kind(cfg) == "points":
        metrics = points_scores(x, torch.from_numpy(ref["x"]), cfg)
        margin = Evaluation.of(cfg).support_margin
        extra = {"out_of_support": out_of_support(x.flatten(1), torch.from_numpy(ref["x"]).flatten(1), margin),
                 "support_margin": margin}
        if has_exact(cfg):
            ex = exact_scores(cfg, x, exact_x, draws)
            metrics |= ex.pop("metrics")
            swds = [metrics["swd"], *ex.pop("swd_draws")]  # the fixed set's, then the further draws'
            if len(swds) > 1:
                ex["eval_sd"]["swd"] = float(np.std(swds, ddof=1))
            extra |= ex | {"swd_draws": swds}
    else:
        stats = (ref["mu"], ref["sigma"]) if "mu" in ref else None
        metrics = feature_metrics(image_features(x, extractor(cfg, features_path)), ref["feats"], stats)
        extra = feature_info(cfg["evaluation"])
    return {"metrics": metrics, "primary": headline(cfg), "kind": kind(cfg), "num_samples": int(x.shape[0]),
            **extra}
