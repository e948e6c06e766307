"""Figures: sample scatter/grid per run, training curves, the ablation plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def _save(fig, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    if str(path).endswith(".png"):
        fig.savefig(str(path)[:-4] + ".pdf", bbox_inches="tight")
    plt.close(fig)


def samples(x: torch.Tensor, path: str | Path, title: str, ref: torch.Tensor | None = None) -> None:
    """Scatter for 2-D points (reference in grey), an image grid otherwise."""
    if x.ndim == 2:
        fig, ax = plt.subplots(figsize=(4, 4))
        if ref is not None:
            ax.scatter(ref[:, 0], ref[:, 1], s=1, c="0.8", label="data")
        ax.scatter(x[:, 0], x[:, 1], s=1, c="C0", label="samples")
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_aspect("equal")
        ax.legend(loc="upper right", markerscale=6, fontsize=7)
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


def ablation(rows: list[dict], ref_rows: list[dict], metric: str, path: str | Path, title: str) -> None:
    """One bar per grid point (mean +- std over seeds, seeds as dots), reference lines for the teacher."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    labels = [r["label"] for r in rows]
    means = [r["mean"] for r in rows]
    stds = [r["std"] or 0.0 for r in rows]
    ax.bar(range(len(rows)), means, yerr=stds, capsize=4, color="C0", alpha=0.8)
    for i, r in enumerate(rows):
        ax.scatter([i] * len(r["values"]), r["values"], s=12, c="k", zorder=3)
    styles = ["--", "-.", ":", (0, (1, 1)), "-"]
    for j, r in enumerate(ref_rows):
        ax.axhline(r["mean"], ls=styles[j % len(styles)], c=f"C{j + 1}", lw=1, label=r["label"])
    ax.set_xticks(range(len(rows)), labels, rotation=0)
    ax.set_ylabel(metric)
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="best")
    _save(fig, path)


def curves(log_rows: list[dict], path: str | Path, title: str, keys=("L_k", "R_k")) -> None:
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


def quality_vs_cost(points: list[dict], ref_rows: list[dict], metric: str, path: str | Path, title: str) -> None:
    """Quality (mean +- std over seeds) against training wall time and teacher evaluations, one point per
    method; reference lines for the data floor and the teacher's DDIM."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    styles = ["--", "-.", ":", (0, (1, 1)), "-"]
    for ax, key, xlabel in ((axes[0], "wall_time_s", "training wall time (s)"),
                            (axes[1], "teacher_evals", "teacher evaluations in training (per sample)")):
        for i, p in enumerate(points):
            ax.errorbar([p[key]], [p["mean"]], yerr=[p["std"] or 0.0], fmt="o", c=f"C{i % 10}", capsize=3)
            ax.annotate(p["label"], (p[key], p["mean"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        for j, r in enumerate(ref_rows):
            ax.axhline(r["mean"], ls=styles[j % len(styles)], c="0.4", lw=0.8, label=r["label"])
        if key == "teacher_evals":  # data- and pair-trained methods spend none: a linear stretch around 0
            ax.set_xscale("symlog", linthresh=1e3)
            ax.set_xlim(-100, 4 * max([p[key] for p in points] + [1e3]))
            ax.set_xticks([0] + [10**k for k in range(3, 10) if 10**k < 4 * max([p[key] for p in points] + [1e3])])
        else:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
    axes[0].set_yscale("log")
    axes[0].set_ylabel(f"{metric} (one step)")
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
