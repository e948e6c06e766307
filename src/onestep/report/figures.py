"""Figures (matplotlib): a run's samples (a 2-D density image beside the data's, or an image grid), training
curves, the main, baselines and study plots (the ablation figures: ablation_figures.py)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def _save(fig, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    if str(path).endswith(".png"):
        fig.savefig(str(path)[:-4] + ".pdf", bbox_inches="tight")
    plt.close(fig)


DENSITY_BINS, DENSITY_BOX = 150, 3.0  # the 2-D density images: 150 x 150 bins on [-3, 3]^2


def _density(ax, pts: np.ndarray, title: str, vmax: float | None = None):
    """A 2-D histogram of pts as an image, density per unit area on a log colour scale (empty bins white)."""
    from matplotlib.colors import LogNorm

    b = DENSITY_BOX
    h, _, _ = np.histogram2d(pts[:, 0], pts[:, 1], bins=DENSITY_BINS, range=[[-b, b], [-b, b]])
    dens = h / max(len(pts), 1) / (2 * b / DENSITY_BINS) ** 2
    vmax = vmax or float(dens.max()) or 1.0
    im = ax.imshow(np.ma.masked_equal(dens.T, 0), origin="lower", extent=(-b, b, -b, b), cmap="viridis",
                   norm=LogNorm(vmin=vmax * 1e-4, vmax=vmax), interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_aspect("equal")
    return im, vmax


def samples(x: torch.Tensor, path: str | Path, title: str, ref: torch.Tensor | None = None,
            off_support: float | None = None) -> None:
    """2-D points: a density image of the samples beside the data's (every point counted, readable at any N;
    `off_support`: the exact off-support mass, in the panel title); an image grid otherwise."""
    if x.ndim == 2:
        fig, axs = plt.subplots(1, 1 + (ref is not None), figsize=(4 + 3.6 * (ref is not None), 3.8), squeeze=False)
        note = f", off-support {off_support:.2%}" if off_support is not None else ""
        vmax = None
        if ref is not None:
            _, vmax = _density(axs[0, 0], ref.double().numpy(), f"data (N = {len(ref)})")
        im, _ = _density(axs[0, -1], x.double().numpy(), f"samples (N = {len(x)}{note})", vmax)
        fig.colorbar(im, ax=list(axs.flat), shrink=0.8, label="density (log)")
        fig.suptitle(title, fontsize=9)
        _save(fig, path)
        return
    else:
        n = min(64, x.shape[0])
        side = int(n**0.5)
        imgs = ((x[: side * side].clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1)  # (n, H, W, C)
        h, w, c = imgs.shape[1:]
        grid = imgs.view(side, side, h, w, c).permute(0, 2, 1, 3, 4).reshape(side * h, side * w, c)
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.imshow(grid.squeeze(-1) if c == 1 else grid, cmap="gray" if c == 1 else None)
        ax.axis("off")
    ax.set_title(title, fontsize=9)
    _save(fig, path)


TERMS = ("L_k", "R_k", "term_R", "term_adv")  # loss terms a method may log (train_log.csv); else its loss


def curves(log_rows: list[dict], path: str | Path, title: str, keys=TERMS) -> None:
    """Per-stage training curves against step, stage boundaries marked."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    steps = [r["step"] for r in log_rows]
    keys = [k for k in keys if log_rows and k in log_rows[0]] or ["loss"]  # methods without L_k, R_k: their loss
    for key in keys:
        ax.plot(steps, [r[key] for r in log_rows], label=key, lw=1)
    phases = [r.get("phase") for r in log_rows]
    for i in range(1, len(phases)):
        if phases[i] != phases[i - 1]:
            ax.axvline(steps[i - 1], c="0.7", lw=0.6)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path)


def samples_side_by_side(images: list[tuple[str, Path]], path: str | Path, title: str) -> None:
    """The points' sample figures (samples.png of one seed: 2-D, the samples' density image beside the data's) in
    one column, each at a readable width."""
    images = [(label, Path(f)) for label, f in images if Path(f).is_file()]
    n = max(1, len(images))
    fig, axs = plt.subplots(n, 1, figsize=(7, 3.6 * n), squeeze=False)
    for ax, (label, f) in zip(axs.flat, images, strict=False):
        ax.imshow(plt.imread(f))
        ax.set_title(label, fontsize=8)
    for ax in axs.flat:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def main(rows: list[dict], ref_rows: list[dict], metric: str, path: str | Path) -> None:
    """Baseline and best point of each ablation: mean with its 95% interval, teacher lines."""
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows)), 3.8))
    for i, r in enumerate(rows):
        lo, hi = r["lo"], r["hi"]
        err = [[r["mean"] - lo], [hi - r["mean"]]] if lo == lo and hi == hi else None  # nan-safe
        ax.errorbar([i], [r["mean"]], yerr=err, marker="s" if r["baseline"] else "o", capsize=4,
                    c="C0" if r["baseline"] else "C3")
    styles = ["--", "-.", ":", (0, (1, 1)), "-"]
    for j, r in enumerate(ref_rows):
        ax.axhline(r["mean"], ls=styles[j % len(styles)], c=f"C{j + 1}", lw=1, label=r["label"])
    ax.set_xticks(range(len(rows)), [r["label"] for r in rows], fontsize=7)
    ax.set_ylabel(f"{metric} (95% CI)")
    ax.set_yscale("log")
    ax.set_title("Baseline (square) and best point (circle) of each ablation", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    _save(fig, path)
def quality_vs_cost(points: list[dict], ref_rows: list[dict], metric: str, path: str | Path, title: str) -> None:
    """Quality (mean +- std over seeds) against the counted training compute (teacher evaluations + student
    forward and backward passes, per sample) and against training wall time, one point per method;
    reference lines for the data floor and the teacher's rows."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    styles = ["--", "-.", ":", (0, (1, 1)), "-"]
    for ax, key, xlabel in ((axes[0], "compute", "teacher evaluations + student passes in training (per sample)"),
                            (axes[1], "wall_time_s", "training wall time (s)")):
        for i, p in enumerate(points):
            if p.get(key) is None or p[key] != p[key]:  # a run from before the counters: no point
                continue
            ax.errorbar([p[key]], [p["mean"]], yerr=[p["std"] or 0.0], fmt="o", c=f"C{i % 10}", capsize=3)
            ax.annotate(p["label"], (p[key], p["mean"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        for j, r in enumerate(ref_rows):
            ax.axhline(r["mean"], ls=styles[j % len(styles)], c="0.4", lw=0.8, label=r["label"])
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())  # labels at the decades only: minor ones overlap
        ax.set_xlabel(xlabel, fontsize=8)
    axes[0].set_yscale("log")
    axes[0].set_ylabel(f"{metric} (one step)")
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def stage_errors(lines: list[dict], path: str | Path, title: str) -> None:
    """Per-stage RMS error of G(z, t_k) against t_k, two panels (the seed's target sqrt(abar) x0, the teacher's
    trajectory x_{t_k}(z)); per point one line (mean over seeds) and a band (min..max over seeds).
    `lines`: [{"label", "runs": [{"t", "err_mean", "err_traj"} per seed]}]; runs of different K share the axis t."""
    import numpy as np

    fig, axs = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, key, name in zip(axs, ("err_mean", "err_traj"), ("vs sqrt(abar_t) x0 (mean target)",
                                                             "vs teacher trajectory x_t(z)"), strict=True):
        for j, ln in enumerate(lines):
            t = np.array(ln["runs"][0]["t"])
            errs = np.array([r[key] for r in ln["runs"] if len(r[key]) == len(t)])  # (seeds, K)
            ax.plot(t, errs.mean(0), c=f"C{j}", lw=1.2, marker="o" if len(t) <= 20 else None, ms=3,
                    label=f"{ln['label']} ({len(errs)} seed{'s' * (len(errs) > 1)})")
            if len(errs) > 1:
                ax.fill_between(t, errs.min(0), errs.max(0), color=f"C{j}", alpha=0.2, lw=0)
        ax.set_xlabel("t_k")
        ax.set_title(name, fontsize=9)
        ax.invert_xaxis()  # training runs T -> 0 (forward)
        ax.set_yscale("log")
    axs[0].set_ylabel("RMS error per coordinate")
    axs[1].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def tuned(rows: list[dict], metric: str, path: str | Path) -> None:
    """Bars per method: the validation metric of its defaults and of its tuned values."""
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(rows) + 1), 3.2))
    xs = range(len(rows))
    nan = float("nan")
    ax.bar([x - 0.2 for x in xs], [nan if r["default_value"] is None else r["default_value"] for r in rows], 0.4,
           label="defaults")
    ax.bar([x + 0.2 for x in xs], [r["tuned_value"] for r in rows], 0.4, label="tuned")
    ax.set_xticks(list(xs), [r["method"] for r in rows], rotation=45, ha="right")
    ax.set_ylabel(metric)
    ax.set_title("Equal-effort tuning: validation metric per method")
    ax.legend()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def run_samples(x: torch.Tensor, ref: dict[str, np.ndarray], path: str | Path, title: str,
                off_support: float | None = None) -> None:
    """A run's (or a teacher row's) samples' figure: the first 64 images, or the density image of every 2-D point
    beside the reference points' (`ref["x"]`), the exact off-support mass in the title where known."""
    from onestep.evaluate import to_unit

    x = to_unit(x[:64]) if x.dtype == torch.uint8 else x
    samples(x, path, title, torch.from_numpy(ref["x"]) if x.ndim == 2 else None, off_support)
