"""student.init_from_teacher: a student whose method reads an epsilon network (`teacher_head`) starts as the teacher,
read in the method's own parameterisation (nets.EpsHead): its one-step sample is the teacher's x0 prediction at T."""

import pytest
import torch

from onestep.config import ConfigError, deep_merge, validate, with_method
from onestep.diffusion import Schedule, Teacher
from onestep.methods import METHODS, build_method, context, student_net
from onestep.nets import EpsHead, build_net

NET = {"name": "mlp", "width": 16, "depth": 1, "temb_dim": 8}
READ = sorted(name for name, m in METHODS.items() if m.teacher_read is not None)
PLAIN = sorted(name for name, m in METHODS.items() if m.teacher_read is None)


def _cfg(default_config, name: str, init: bool) -> dict:
    cfg = with_method({**default_config, "seed": 0}, {"name": name})
    cfg = deep_merge(cfg, {"student": {"batch_size": 16, "log_every": 1, "lr": 1e-12, "ema": 0.0, "warmup": 0,
                                       "net": NET, "init_from_teacher": init}, "teacher": {"net": NET}})
    validate(cfg)
    return cfg


def _x0_at_T(teacher: Teacher, z: torch.Tensor, T: int | None = None) -> torch.Tensor:
    """The teacher's x0 prediction from z at t = T (the schedule's by default): (z - sqrt(1 - abar_T) eps(z, T)) /
    sqrt(abar_T)."""
    T = teacher.schedule.T if T is None else T
    a = teacher.schedule.abar[T]
    return (z - (1 - a).sqrt() * teacher.eps(z, torch.full((z.shape[0],), T))) / a.sqrt()


def _teacher(cfg: dict, seed: int = 0) -> Teacher:
    torch.manual_seed(seed)
    return Teacher(build_net(NET, (2,)), Schedule.from_config(cfg["diffusion"]))


def test_every_teacher_method_reads_the_teacher_or_copies_it(default_config):
    """Each method that distils a teacher reads it; the methods that train from data (needs_data) keep the plain net."""
    assert set(READ) == {"curriculum", "kd", "dmd2", "tdm", "cd", "ctm", "progressive", "reflow"}
    assert all(METHODS[name].needs_data for name in PLAIN)
    for name in PLAIN:
        assert student_net(_cfg(default_config, name, True))["name"] == "mlp", name
    for name in READ:
        assert student_net(_cfg(default_config, name, True))["name"] == "eps_head", name
        assert student_net(_cfg(default_config, name, False))["name"] == "mlp", name


@pytest.mark.parametrize("name", [n for n in READ if METHODS[n].teacher_read != "flow"])
def test_a_student_started_from_the_teacher_samples_the_teachers_x0_prediction(default_config, name):
    """Through the method's own one-step sampler (its parameterisation, c_skip / c_out, v, the x0 read at T), the
    started student gives the teacher's x0 prediction from z at the sampler's first time (T; tdm's t_top, where
    TDM's demo feeds pure noise); a fresh student does not."""
    cfg = _cfg(default_config, name, True)
    teacher = _teacher(cfg)
    ctx = context(cfg, teacher, (2,))
    method = build_method(cfg, ctx)
    student = build_net(student_net(cfg), (2,))
    assert isinstance(student, EpsHead)
    missing, unexpected = student.start_from(teacher.net)
    assert not missing and not unexpected
    z = torch.randn(64, 2)
    want = _x0_at_T(teacher, z, getattr(method.cfg, "t_top", None))
    with torch.no_grad():
        got = method.sample(student, z, 1)
    # cd's consistency scalings use sigma_min = sigma_1 (CM's), EDM's 0: at sigma_T ~ 157 they differ by 1e-4
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)
    fresh = build_net(student_net(cfg), (2,))
    with torch.no_grad():
        assert not torch.allclose(method.sample(fresh, z, 1), want, atol=1e-2)


def test_reflow_started_from_the_teacher_steps_along_the_teachers_flow(default_config):
    """reflow's one Euler step from z at t = 1 is z - v, v = eps(z, T) - x0(z, T) of the teacher (its flow at T)."""
    cfg = _cfg(default_config, "reflow", True)
    teacher = _teacher(cfg)
    method = build_method(cfg, context(cfg, teacher, (2,)))
    student = build_net(student_net(cfg), (2,))
    student.start_from(teacher.net)
    z = torch.randn(64, 2)
    eps = teacher.eps(z, torch.full((64,), teacher.schedule.T))
    with torch.no_grad():
        torch.testing.assert_close(method.sample(student, z, 1), z - (eps - _x0_at_T(teacher, z)), rtol=1e-4, atol=1e-4)


def test_the_flow_read_is_the_teachers_velocity_at_the_matched_state():
    """At r with abar(k) = (1 - r)^2 / ((1 - r)^2 + r^2) for a table index k, the flow read is eps - x0 of the
    teacher at k on the VP state x_r / sqrt((1 - r)^2 + r^2); r = 0 is x itself, its v = eps(x, 0) - x."""
    diff = {"T": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}
    sch = Schedule.from_config(diff)
    torch.manual_seed(0)
    teacher = Teacher(build_net(NET, (2,)), sch)
    head = EpsHead((2,), NET, diff, "flow")
    head.start_from(teacher.net)
    k = torch.tensor([3, 40, 250, 600, 900])
    a = sch.abar[k].double()
    r = (1 - a).sqrt() / (a.sqrt() + (1 - a).sqrt())
    x = torch.randn(5, 2)
    n = ((1 - r) ** 2 + r**2).sqrt().float().view(-1, 1)
    xv, af = x / n, a.float().view(-1, 1)
    eps = teacher.eps(xv, k)
    with torch.no_grad():
        got = head(x, (r * sch.T).float())
    torch.testing.assert_close(got, eps - (xv - (1 - af).sqrt() * eps) / af.sqrt(), rtol=1e-3, atol=1e-3)


def test_reads_match_their_formulas_at_every_time():
    """Each read against its formula from the teacher's eps at t (diffusers index t - 1): x0, v = (eps - sigma x) /
    alpha, EDM's F with D = c_skip x / alpha + c_out F the teacher's denoiser; F is 0 at sigma = 0, with a finite
    gradient there."""
    diff = {"T": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}
    sch = Schedule.from_config(diff)
    torch.manual_seed(0)
    teacher = Teacher(build_net(NET, (2,)), sch)
    x, t = torch.randn(6, 2), torch.tensor([1, 2, 10, 300, 999, 1000])
    a = sch.abar[t].view(-1, 1)
    eps = teacher.eps(x, t)
    x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
    heads = {read: EpsHead((2,), NET, diff, read, sigma_data=0.5) for read in ("x0", "v", "edm")}
    for h in heads.values():
        h.start_from(teacher.net)
    with torch.no_grad():
        torch.testing.assert_close(heads["x0"](x, t), x0)
        torch.testing.assert_close(heads["v"](x, t), (eps - (1 - a).sqrt() * x) / a.sqrt())
        sig2 = (1 - a) / a
        c_skip, c_out = 0.25 / (sig2 + 0.25), sig2.sqrt() * 0.5 / (sig2 + 0.25).sqrt()
        torch.testing.assert_close(c_skip * x / a.sqrt() + c_out * heads["edm"](x, t), x0, rtol=1e-4, atol=1e-4)
    x0r = x.clone().requires_grad_(True)
    out = heads["edm"](x0r, torch.zeros(6, dtype=torch.long))
    out.sum().backward()
    assert torch.equal(out, torch.zeros_like(out)) and torch.isfinite(x0r.grad).all()


def test_two_time_reads_start_with_the_second_time_silent():
    """A two-time student (ctm's F(x, t, s), meanflow's u(x, r, t)): the second-time embedding starts at zero, so the
    read does not depend on it until training moves it."""
    diff = {"T": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}
    torch.manual_seed(0)
    teacher = Teacher(build_net(NET, (2,)), Schedule.from_config(diff))
    head = EpsHead((2,), NET, diff, "x0", times=2)
    missing, unexpected = head.start_from(teacher.net)
    assert not missing and not unexpected
    x, t = torch.randn(4, 2), torch.full((4,), 500)
    with torch.no_grad():
        torch.testing.assert_close(head(x, t, torch.zeros(4)), head(x, t, torch.full((4,), 250)))


def test_train_student_starts_from_the_teacher(default_config):
    """Through the trainer (one step at a vanishing lr, no EMA lag): the student's first output is the teacher's x0
    prediction at T."""
    from onestep.training.train import train_student

    cfg = deep_merge(_cfg(default_config, "kd", True), {"method": {"steps": 1}})
    teacher = _teacher(cfg, 1)
    pairs = {"z": torch.randn(64, 2), "x0": torch.randn(64, 2)}
    model, _ = train_student(cfg, teacher, pairs, "cpu", lambda *a, **k: None, progress=False)
    z = torch.randn(16, 2)
    torch.testing.assert_close(model(z, torch.full((16,), 1000)), _x0_at_T(teacher, z), rtol=1e-4, atol=1e-3)


def test_the_analytic_teacher_has_no_weights_to_start_from(default_config):
    cfg = deep_merge(with_method({**default_config, "seed": 0}, {"name": "kd"}),
                     {"dataset": {"name": "gmm"}, "teacher": {"kind": "analytic"}, "student": {"init_from_teacher": True}})
    with pytest.raises(ConfigError, match=r"student\.init_from_teacher: the analytic teacher"):
        validate(cfg)


def test_head_on_images_convnet_and_unet_starts_as_the_teacher():
    """The image nets: the convnet's and the UNet's second-time embedding (temb_s, UNet2DModel's class embedding)
    is zeroed, so the x0_at_T read is the teacher's x0 prediction at T there too."""
    diff = {"T": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}
    sch = Schedule.from_config(diff)
    for net, shape in (({"name": "convnet", "width": 8, "depth": 1, "temb_dim": 8}, (1, 8, 8)),
                       ({"name": "unet2d", "width": 8, "depth": 1, "norm_num_groups": 4}, (1, 32, 32))):
        torch.manual_seed(0)
        teacher = Teacher(build_net(net, shape), sch)
        head = EpsHead(shape, net, diff, "x0_at_T")
        missing, unexpected = head.start_from(teacher.net)
        assert not missing and not unexpected, (missing[:3], unexpected[:3])
        z = torch.randn(2, *shape)
        with torch.no_grad():
            torch.testing.assert_close(head(z, torch.tensor([0, 700])), _x0_at_T(teacher, z), rtol=1e-4, atol=1e-3)


def test_a_started_student_round_trips_through_its_checkpoint(default_config, tmp_path):
    """student.pt carries the read's config (schedule, sigma_data): the loaded student is the saved one."""
    from onestep.checkpoint import load_checkpoint, save_checkpoint

    cfg = _cfg(default_config, "ctm", True)
    teacher = _teacher(cfg)
    student = build_net(student_net(cfg), (2,))
    student.start_from(teacher.net)
    torch.nn.init.normal_(student.net.temb_s[-1].weight)  # as if trained: the second time now counts
    save_checkpoint(tmp_path / "student.pt", "student", student_net(cfg), (2,), cfg, student)
    loaded, _ = load_checkpoint(tmp_path / "student.pt", "student")
    x, t, s = torch.randn(8, 2), torch.full((8,), 700), torch.full((8,), 300)
    with torch.no_grad():
        assert isinstance(loaded, EpsHead) and loaded.sigma_data == student.sigma_data
        torch.testing.assert_close(loaded(x, t, s), student(x, t, s))
