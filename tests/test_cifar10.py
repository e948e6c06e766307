"""The paper tier on CPU: config/cifar10.yaml with a tiny random diffusers DDPM (written by diffusers'
own save_pretrained) and a small random 32x32 .npz standing in for google/ddpm-cifar10-32 and
CIFAR-10, the Inception test double standing in for Inception. No GPU, no download."""

import json
from pathlib import Path

import conftest
import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, Finished

from onestep.config import ConfigError, deep_merge, validate

UNET = {"block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8,
        "down_block_types": ["DownBlock2D", "AttnDownBlock2D"], "up_block_types": ["AttnUpBlock2D", "UpBlock2D"]}
TINY = {
    "out": "results",
    "seeds": [0],
    "threads": {"run": 1, "prep": 1},
    "teacher": {"net": {**UNET, "dropout": 0.0}, "steps": 2, "batch_size": 8, "log_every": 1},
    "pairs": {"num": 48, "ddim_steps": 2, "seed": 1},
    "student": {"net": UNET, "batch_size": 8, "grad_accum": 2, "log_every": 2, "warmup": 1},
    "method": {"K": 2, "steps_per_stage": 2},
    "evaluation": {"num_samples": 40, "noise_chunk": 16, "teacher_steps": [2], "feature_net": "test_double"},
    "tracking": {"system_metrics_s": 1},
}
GRID = {"name": "ablate_order", "title": "Stage ordering (tiny cifar10)", "baseline": {"method.ordering": "forward"},
        "grid": {"method.ordering": ["forward", "reversed"]}}


def tiny_unet(seed: int = 0):
    """A random UNet2DModel in the DDPM CIFAR-10 layout's options, tiny."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(sample_size=32, in_channels=3, out_channels=3, attention_head_dim=None, flip_sin_to_cos=False,
                       freq_shift=1, downsample_padding=0, norm_eps=1e-6, **UNET).eval()


@pytest.fixture(scope="module")
def ddpm_dir(tmp_path_factory):
    """A checkpoint directory in google/ddpm-cifar10-32's format, written by diffusers itself."""
    from diffusers import DDPMScheduler

    d = tmp_path_factory.mktemp("ddpm-tiny-32")
    tiny_unet().save_pretrained(d)
    DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                  clip_sample=True, variance_type="fixed_large").save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "tiny_cifar.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8))
    return path


def cifar_config(default_config, npz, ddpm_dir, **over) -> dict:
    cfg = deep_merge(default_config, yaml.safe_load((REPO / "config" / "cifar10.yaml").read_text()))
    cfg = deep_merge(cfg, TINY)
    cfg = deep_merge(cfg, {"dataset": {"path": str(npz)}, "teacher": {"pretrained": str(ddpm_dir)}})
    return deep_merge(cfg, over)


# ---------------------------------------------------------------- teacher from a diffusers folder


def test_pretrained_teacher_is_the_diffusers_model_at_the_mapped_timestep(default_config, npz, ddpm_dir, tmp_path,
                                                                           monkeypatch):
    from diffusers import DDPMScheduler

    from onestep.checkpoint import load_checkpoint, load_teacher
    from onestep.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = cifar_config(default_config, npz, ddpm_dir, tracking={"system_metrics_s": None})
    Path("teacher.yaml").write_text(yaml.safe_dump(cfg))  # the job's config file
    main(["teacher", "--config", "teacher.yaml", "--out", "teacher.pt"])
    teacher = load_teacher("teacher.pt")
    _, ckpt = load_checkpoint("teacher.pt", "teacher")
    assert ckpt["net"]["name"] == "unet2d" and ckpt["net"]["block_out_channels"] == [16, 32]
    ref = tiny_unet()  # the same weights, straight from diffusers
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([1, 10, 500, 1000])  # the seed's t = 1..T
    with torch.no_grad():
        want = ref(x, t - 1).sample  # diffusers index t - 1
    assert torch.allclose(teacher.eps(x, t), want, atol=1e-5)
    assert not torch.allclose(teacher.eps(x, t), ref(x, t).sample, atol=1e-5)  # the index shift is real
    sched = DDPMScheduler.from_pretrained(ddpm_dir)
    assert torch.allclose(teacher.schedule.betas[1:].double(), sched.betas.double(), atol=1e-7)
    assert torch.allclose(teacher.schedule.abar[1:].double(), sched.alphas_cumprod.double(), atol=1e-6)
    assert teacher.schedule.abar[0] == 1.0


def test_pretrained_teacher_mismatches_are_named(default_config, npz, ddpm_dir, tmp_path):
    from onestep.pretrained import PretrainedError, import_teacher

    cfg = cifar_config(default_config, npz, ddpm_dir, diffusion={"beta_end": 0.03})
    with pytest.raises(PretrainedError, match=r"diffusion.beta_end: 0.03 in the config.*has 0.02"):
        import_teacher(ddpm_dir, cfg, (3, 32, 32))
    cfg = cifar_config(default_config, npz, ddpm_dir)
    with pytest.raises(PretrainedError, match=r"teacher.pretrained: the UNet takes \(3, 32, 32\)"):
        import_teacher(ddpm_dir, cfg, (1, 8, 8))
    bad = cifar_config(default_config, npz, ddpm_dir, teacher={"pretrained": str(tmp_path / "nope")}, seed=0)
    with pytest.raises(ConfigError, match="teacher.pretrained: folder not found"):
        validate(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PretrainedError, match="teacher.pretrained: .* holds no config.json"):
        import_teacher(tmp_path / "empty", cfg, (3, 32, 32))


def test_missing_dataset_path_is_named(default_config, npz, ddpm_dir):
    from onestep import data

    cfg = cifar_config(default_config, npz, ddpm_dir, dataset={"path": None}, seed=0)
    with pytest.raises(ConfigError, match="dataset.path: dataset 'npz' needs a path"):
        validate(cfg)
    cfg = cifar_config(default_config, npz, ddpm_dir, dataset={"shape": [3, 16, 16]})
    with pytest.raises(data.DataError, match=r"dataset.shape: expected \(3, 16, 16\) .* are \(3, 32, 32\)"):
        data.shape(cfg["dataset"])


def test_trained_unet_teacher_and_student_from_its_weights(default_config, npz, ddpm_dir):
    """The other teacher route (trained by the pipeline, EMA) gives the same interface; the student
    UNet starts from the teacher's weights; grad_accum runs on CPU."""
    from onestep.diffusion import Schedule, Teacher
    from onestep.training.train import train_student, train_teacher

    cfg = cifar_config(default_config, npz, ddpm_dir, teacher={"pretrained": None, "grad_accum": 2}, seed=0)
    net, summary = train_teacher(cfg, "cpu", lambda *a, **k: None, progress=False)
    assert summary["precision"] == "fp32" and summary["steps"] == 2  # auto on CPU: fp32
    teacher = Teacher(net, Schedule.from_config(cfg["diffusion"]))
    z = torch.randn(8, 3, 32, 32)
    pairs = {"z": z, "x0": z.clone()}
    student, s = train_student(cfg, teacher, pairs, "cpu", lambda *a, **k: None, progress=False)
    assert s["steps"] == 4 and s["teacher_evals"] > 0
    assert student(z[:2], torch.zeros(2, dtype=torch.long)).shape == (2, 3, 32, 32)


# ---------------------------------------------------------------- GPU training options on CPU


def test_grad_accumulation_matches_the_full_batch(default_config):
    from onestep.training.train import train_teacher

    cfg = deep_merge(default_config, {"teacher": {"steps": 5, "batch_size": 64, "log_every": 5}})
    a, _ = train_teacher(cfg, "cpu", lambda *x, **k: None, progress=False)
    b, _ = train_teacher(deep_merge(cfg, {"teacher": {"grad_accum": 4}}), "cpu", lambda *x, **k: None, progress=False)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5)
    cfg = {**deep_merge(cfg, {"teacher": {"grad_accum": 3}}), "seed": 0}
    with pytest.raises(ConfigError, match=r"teacher.grad_accum: 3 must divide teacher.batch_size \(64\)"):
        validate(cfg)


def test_precision_resolution_and_context():
    from onestep import accel

    assert accel.resolve_precision("cpu", "auto") == "fp32"
    assert accel.resolve_precision("cpu", "bf16") == "bf16"
    assert accel.resolve_precision("cuda", "bf16", fp32_only=True) == "fp32"  # JVP methods opt out
    lin = torch.nn.Linear(4, 4)
    with accel.precision_context("cpu", "bf16"):
        assert lin(torch.randn(2, 4)).dtype == torch.bfloat16
    with accel.precision_context("cpu", "fp32"):
        assert lin(torch.randn(2, 4)).dtype == torch.float32
    assert accel.micro_slices(8, 2) == [slice(0, 4), slice(4, 8)]
    assert accel.memory_stats("cpu") == {}
    assert accel.use_channels_last("cuda:0", True) and not accel.use_channels_last("cpu", True)
    x = accel.memory_format(torch.randn(2, 3, 4, 4), True)
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def test_bf16_student_training_and_the_fp32_opt_out(default_config, monkeypatch):
    """precision: bf16 trains under autocast (CPU has bf16 autocast too); a method with
    fp32_only = True is trained in fp32 whatever the key, read generically by the trainer."""
    from onestep.diffusion import Schedule, Teacher
    from onestep.methods import METHODS
    from onestep.nets import build_net
    from onestep.training.train import train_student

    cfg = deep_merge(default_config, {"student": {"precision": "bf16", "batch_size": 16, "log_every": 2},
                                      "method": {"K": 2, "steps_per_stage": 2}})
    cfg["seed"] = 0
    teacher = Teacher(build_net(cfg["teacher"]["net"], (2,)), Schedule.from_config(cfg["diffusion"]))
    pairs = {"z": torch.randn(32, 2), "x0": torch.randn(32, 2)}
    _, s = train_student(cfg, teacher, pairs, "cpu", lambda *a, **k: None, progress=False)
    assert s["precision"] == "bf16"

    class JVPLike(METHODS["curriculum"]):
        fp32_only = True

    monkeypatch.setitem(METHODS, "curriculum", JVPLike)
    net, s = train_student(cfg, teacher, pairs, "cpu", lambda *a, **k: None, progress=False)
    assert s["precision"] == "fp32" and all(p.dtype == torch.float32 for p in net.parameters())


# ---------------------------------------------------------------- evaluation: noise, Inception


def test_eval_noise_is_fixed_per_sample(default_config):
    from onestep.evaluate import generate, noise_chunks

    cfg = deep_merge(default_config, {"evaluation": {"num_samples": 40, "noise_chunk": 16}})
    chunks = list(noise_chunks(cfg, (3, 4, 4)))
    assert [c.shape[0] for c in chunks] == [16, 16, 8]
    more = torch.cat(list(noise_chunks(deep_merge(cfg, {"evaluation": {"num_samples": 70}}), (3, 4, 4))))
    assert torch.equal(torch.cat(chunks), more[:40])  # noise i does not depend on N
    other = torch.cat(list(noise_chunks(deep_merge(cfg, {"evaluation": {"noise_seed": 1}}), (3, 4, 4))))
    assert not torch.equal(other, more[:40])
    ident = generate(cfg, (2,), lambda z: z, "cpu")  # points: the noise itself, in order
    assert torch.equal(ident, torch.cat(list(noise_chunks(cfg, (2,)))))


def test_missing_inception_weights_name_the_file_and_folder(default_config, tmp_path):
    from onestep.features import FeatureError, extractor

    cfg = deep_merge(default_config, {"evaluation": {"feature_net": "inception", "inception_dir": str(tmp_path)}})
    with pytest.raises(FeatureError, match=rf"inception-2015-12-05.pt at {tmp_path}/inception-2015-12-05.pt"):
        extractor(cfg, None)


def test_test_double_is_refused_without_the_flag(default_config, monkeypatch):
    from onestep.features import FeatureError, extractor

    monkeypatch.delenv("ONESTEP_ALLOW_TEST_DOUBLE", raising=False)
    cfg = {**deep_merge(default_config, {"evaluation": {"feature_net": "test_double"}}), "seed": 0}
    with pytest.raises(ConfigError, match="'test_double' is the test suite's random stand-in"):
        validate(cfg)
    with pytest.raises(FeatureError, match="refused unless ONESTEP_ALLOW_TEST_DOUBLE=1"):
        extractor(cfg, None)


def test_clean_mode_resizes_to_inception_size(default_config, monkeypatch):
    """The test double sees what Inception would: 299 x 299 in clean mode, the raw image in legacy_tensorflow."""
    from onestep.features import InceptionTestDouble, inception_interface

    seen = []

    class Spy(InceptionTestDouble):
        def forward(self, x):
            seen.append(tuple(x.shape))
            return super().forward(x)

    img = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    a = inception_interface(Spy(), "clean", torch.device("cpu"))(img)
    b = inception_interface(Spy(), "legacy_tensorflow", torch.device("cpu"))(img)
    assert seen == [(3, 3, 299, 299), (3, 3, 32, 32)] and a.shape == b.shape == (3, InceptionTestDouble.dim)


# ---------------------------------------------------------------- the whole DAG through Snakemake


def snakemake(workdir: Path, *args: str):
    """The shared runner over config/cifar10.yaml, with the Inception test double allowed."""
    return conftest.snakemake(workdir, *args, configs=(REPO / "config" / "cifar10.yaml", "tiny.yaml"),
                              env={"ONESTEP_ALLOW_TEST_DOUBLE": "1"})


def FINISHED(npz, ddpm_dir):  # noqa: N802 (what conftest's `finished` runs, of these fixtures)
    tiny = deep_merge(TINY, {"dataset": {"path": str(npz)}, "teacher": {"pretrained": str(ddpm_dir)}})
    return Finished("ablate_order", tiny, {"order": GRID}, run=snakemake)


@pytest.mark.e2e
def test_cifar10_dag_outputs(finished):
    r = finished / "results"
    ref = json.loads((r / "tiny_cifar" / "reference.json").read_text())
    assert ref["kind"] == "images" and ref["features"] == "test_double" and ref["fid_mode"] == "clean"
    assert ref["num_samples"] == 48  # the whole training set
    with np.load(r / "tiny_cifar" / "reference.npz") as z:
        assert z["mu"].shape == (64,) and z["sigma"].shape == (64, 64) and z["feats"].shape == (48, 64)
    for order in ("forward", "reversed"):
        run = r / "tiny_cifar" / "ablate_order" / f"ordering-{order}_seed-0"
        m = json.loads((run / "metrics.json").read_text())
        assert m["primary"] == "fid" and m["num_samples"] == 40 and m["features"] == "test_double"
        assert m["metrics"]["fid"] > 0 and np.isfinite(m["metrics"]["kid"])
        assert m["train"]["samples_per_s"] > 0 and m["train"]["precision"] == "fp32"
        assert (run / "samples.png").stat().st_size > 0
    teacher = torch.load(r / "tiny_cifar" / "teacher" / "teacher.pt", weights_only=False)
    assert teacher["net"]["name"] == "unet2d" and teacher["shape"] == [3, 32, 32]
    md = (r / "tables" / "tiny_cifar" / "ablate_order.md").read_text()
    assert "TEST DOUBLE" in md and "clean-fid mode clean" in md and "FID and KID of 40 samples per row" in md
    assert "teacher DDIM 2 steps" in md and "statistics of the 48 training images" in md


@pytest.mark.e2e
def test_cifar10_dag_mlflow(finished):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{finished / 'results' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("onestep")
    by_kind = {}
    for run in client.search_runs([exp.experiment_id]):
        by_kind.setdefault(run.data.tags.get("kind"), []).append(run)
    (teacher,) = by_kind["teacher"]
    assert teacher.data.tags["source"] == "pretrained" and teacher.data.params["teacher.pretrained"]
    # teacher rows: DDIM 2 (evaluation.teacher_steps) and the pairs' own solver (pairs.solver: dpm++, clipped)
    assert len(by_kind["reference"]) == 2 and len(by_kind["run"]) == 2
    for run in by_kind["run"]:
        assert run.info.status == "FINISHED" and run.data.tags["precision"] == "fp32"
        keys = set(run.data.metrics)
        assert {"eval_fid", "eval_kid", "samples_per_s", "loss", "L_k"} <= keys
        assert any(k.startswith("system/") for k in keys)  # MLflow system metrics were on
        assert run.data.params["student.grad_accum"] == "2" and run.data.params["evaluation.feature_net"] == "test_double"


@pytest.mark.e2e
def test_cifar10_reference_and_teacher_are_reused(finished):
    from conftest import planned_jobs

    p = snakemake(finished, "ablate_order", "-n")
    assert "Nothing to be done" in p.stdout + p.stderr
    (finished / "results" / "tiny_cifar" / "ablate_order" / "ordering-reversed_seed-0" / "metrics.json").unlink()
    p = snakemake(finished, "ablate_order", "-n")
    assert planned_jobs(p.stdout) == {"ablate_order": 1, "evaluate": 1, "table": 1}  # no reference, no teacher
