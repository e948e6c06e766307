"""The teacher's stages: train (or import) it, its DDIM pairs and trajectory states, the dataset's feature
classifier and reference, and the teacher's own scored rows."""

from __future__ import annotations

import json
import time
from pathlib import Path

from onestep import outputs, provenance


def teacher(cfg: dict, out: Path):
    """Train the DDPM teacher (or import teacher.pretrained) into `out`, its summary beside it (.json)."""
    from onestep import data, jobs
    from onestep.checkpoint import save_checkpoint
    from onestep.config import Teacher
    from onestep.training.resume import Resume

    data.check(cfg["dataset"])
    shape, pre = data.shape(cfg["dataset"]), Teacher.of(cfg).pretrained
    # next to the output, not a declared output: it survives a failed job (see stages.run.train)
    resume = Resume.open(out.with_suffix(".resume.pt"), Teacher.of(cfg).checkpoint_every, cfg)
    source = "analytic" if Teacher.of(cfg).kind == "analytic" else "pretrained" if pre else "trained"
    tags = {"kind": "teacher", "source": source, "onestep.order": "~shared/0000"}
    from onestep.tracking import shared_parent

    with jobs.resumable_record(cfg, "teacher", tags, resume, {}, shared_parent(cfg)) as rec:
        net, net_cfg, summary = SOURCES[source](cfg, shape, jobs.device(cfg), rec, resume)
        rec.metrics(summary)
        save_checkpoint(out, "teacher", net_cfg, shape, cfg, net)
        rec.artifact(out, "checkpoint")
    outputs.write_json(out.with_suffix(".json"), summary | {"code": provenance.record("teacher")})
    resume.path.unlink(missing_ok=True)
    print(json.dumps(summary))
    return jobs.Done(cfg, rec.run_id)


def _trained(cfg: dict, shape, device, rec, resume):
    from onestep.training.train import train_teacher

    net, summary = train_teacher(cfg, device, rec.metrics, resume=resume)
    return net, cfg["teacher"]["net"], summary


def _pretrained(cfg: dict, shape, device, rec, resume):
    """A local diffusers DDPM directory, imported into the same checkpoint format."""
    from onestep.config import Teacher
    from onestep.pretrained import import_teacher

    pre = Teacher.of(cfg).pretrained
    net, net_cfg = import_teacher(pre, cfg, shape)
    return net, net_cfg, {"pretrained": str(pre), "params": sum(p.numel() for p in net.parameters())}


def _analytic(cfg: dict, shape, device, rec, resume):
    """The exact epsilon of the dataset's mixture (nets.ExactEps): nothing trained; the checkpoint holds the
    mixture (weights, means, variances) and the zero correction network a fake score trains."""
    from onestep import gmm
    from onestep.nets import build_net

    net_cfg = {"name": "gmm_exact", "dataset": cfg["dataset"], "diffusion": cfg["diffusion"],
               "correction": cfg["teacher"]["net"]}
    g = gmm.settings(cfg["dataset"])
    summary = {"analytic": cfg["dataset"]["name"], "dim": g["dim"], "modes": g["modes"],
               "covariance": g["covariance"], "params": 0}
    return build_net(net_cfg, shape), net_cfg, summary


SOURCES = {"trained": _trained, "pretrained": _pretrained, "analytic": _analytic}  # teacher source -> its builder


def pairs(cfg: dict, teacher: Path, out: Path) -> None:
    """The teacher's pairs (z, x0) into `out` (pairs.solver), and beside it (.json) the solve's residual: the first
    RESIDUAL_N pairs solved again with twice the steps, |x0 - x0_fine| (what tolerance the pairs hold)."""
    from onestep import jobs
    from onestep.checkpoint import load_checkpoint
    from onestep.config import Pairs
    from onestep.data import clip_x0
    from onestep.diffusion import teacher_pairs, teacher_sample

    pc, device = Pairs.of(cfg).as_dict(), jobs.device(cfg)
    net, ckpt = load_checkpoint(teacher, "teacher")
    clip = clip_x0(pc["clip_x0"], cfg["dataset"])
    z, x0 = teacher_pairs(net.to(device), tuple(ckpt["shape"]), pc["num"], pc["seed"], pc["ddim_steps"],
                          cfg["diffusion"], device, chunk=pc["batch_size"], solver=pc["solver"], clip_x0=clip)
    outputs.save_npz(out, z=z.numpy(), x0=x0.numpy())
    n = min(RESIDUAL_N, pc["num"])
    fine = teacher_sample(net, z[:n].to(device), 2 * pc["ddim_steps"], cfg["diffusion"], pc["solver"], clip).cpu()
    err = (x0[:n] - fine).flatten(1).norm(dim=1)  # (n,)
    residual = {"solver": pc["solver"], "steps": pc["ddim_steps"], "fine_steps": 2 * pc["ddim_steps"], "n": n,
                "residual_max": float(err.max()), "residual_mean": float(err.mean()),
                "residual_rel": float(err.mean() / x0[:n].flatten(1).norm(dim=1).mean().clamp(min=1e-12))}
    outputs.write_json(out.with_suffix(".json"), residual)
    print(f"{pc['num']} teacher pairs written to {out}; residual against {2 * pc['ddim_steps']} steps: "
          f"{json.dumps(residual)}")


RESIDUAL_N = 1024  # pairs re-solved at twice the steps for the residual


def trajectory(cfg: dict, teacher: Path, times: list[int], out: Path, pairs: Path | None = None) -> None:
    """The teacher's DDIM states x_t(z) at the times a method's grid names (its `state_grid`), once per teacher
    and grid: on the pairs' z (`pairs`; read in training) or on the held-out stage noise (its diagnostics)."""
    import numpy as np

    from onestep import jobs
    from onestep.checkpoint import load_checkpoint
    from onestep.config import Pairs
    from onestep.data import clip_x0
    from onestep.diffusion import teacher_states
    from onestep.evaluate import stage_noise

    pc, device = Pairs.of(cfg).as_dict(), jobs.device(cfg)
    net, ckpt = load_checkpoint(teacher, "teacher")
    z = outputs.load_pairs(pairs)["z"] if pairs else stage_noise(cfg, tuple(ckpt["shape"]))
    times = tuple(sorted(times))
    x0, xt = teacher_states(net.to(device), z, pc["ddim_steps"], cfg["diffusion"], times, device,
                            chunk=pc["batch_size"], clip_x0=clip_x0(pc["clip_x0"], cfg["dataset"]),
                            solver=pc["solver"])
    outputs.save_npz(out, z=z.numpy(), x0=x0.numpy(), xt=xt.numpy(), trajectory_t=np.asarray(times, dtype=np.int64))
    print(f"DDIM states of {z.shape[0]} noises at {len(times)} times written to {out}")


def features(cfg: dict, out: Path) -> None:
    """Train the dataset's classifier (digits: the FID/KID features) into `out`."""
    from onestep.features import fit_features, save_feature_net

    net, acc = fit_features(cfg)
    save_feature_net(out, net, acc)
    print(f"feature classifier: held-out accuracy {acc:.3f}")


def reference(cfg: dict, config: Path, out: Path, summary: Path, features: Path | None = None) -> None:
    """The data's reference samples/features (`out`) and the metric floor (`summary`)."""
    from onestep.evaluate import reference as make_reference

    arrays, floor = make_reference(cfg, features)
    outputs.save_npz(out, **arrays)
    outputs.write_json(summary, floor | outputs.provenance(config) | {"code": provenance.record("reference")})
    print(json.dumps(floor))


def teacher_eval(cfg: dict, config: Path, teacher: Path, reference: Path, steps: int, solver: str, clip_x0,
                 out: Path, plot: Path, features: Path | None = None):
    """Score the teacher's samples of `steps` steps of `solver` (a reference row of the tables)."""
    from onestep import jobs, tracking
    from onestep.checkpoint import load_checkpoint
    from onestep.config import plain_ddim
    from onestep.data import clip_x0 as data_clip
    from onestep.diffusion import pairs_label, teacher_sample
    from onestep.evaluate import exact_sample, generate, score
    from onestep.report.figures import run_samples

    device = jobs.device(cfg)
    net, ckpt = load_checkpoint(teacher, "teacher")
    net.to(device)
    ref = outputs.load_npz(reference)
    clip_x0 = data_clip(clip_x0, cfg["dataset"])
    plain = plain_ddim(solver, clip_x0)  # a DDIM row; else the pairs' solver row
    label = f"teacher DDIM {steps}" if plain else "teacher " + pairs_label(
        {"solver": solver, "ddim_steps": steps, "clip_x0": clip_x0})
    tags = {"kind": "reference", "ddim_steps": str(steps), "onestep.order": f"~shared/{steps:04d}"}
    with tracking.record(cfg, label, tags, parent_id=tracking.shared_parent(cfg)) as rec:
        t0 = time.time()
        solve = lambda z: teacher_sample(net, z, steps, cfg["diffusion"], solver, clip_x0)  # noqa: E731
        x = generate(cfg, tuple(ckpt["shape"]), solve, device)
        exact_x = exact_sample(cfg, tuple(ckpt["shape"]), solve, device)  # 2-D: the exact metrics' own sample
        result = {**score(x, ref, cfg, features, exact_x), "steps": steps, "sampling_s": time.time() - t0,
                  "label": label, "solver": solver, "clip_x0": clip_x0,
                  "max_abs": float(x.abs().max()), **outputs.provenance(config),
                  "code": provenance.record("teacher_eval")}
        rec.metrics(result["metrics"] | {k: result[k] for k in ("out_of_support",) if k in result})
        run_samples(x, ref, plot, label if not plain else f"teacher DDIM {steps} steps",
                    result["metrics"].get("off_support"))
        rec.artifact(plot, "plots")
    outputs.write_json(out, result)
    print(json.dumps(result["metrics"]))
    return jobs.Done(cfg, rec.run_id)
