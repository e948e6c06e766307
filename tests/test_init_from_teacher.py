"""student.init_from_teacher: a generator student (`teacher_head`) starts as the teacher's x0 prediction at T."""

import torch

from onestep.config import deep_merge, validate, with_method
from onestep.diffusion import Schedule, Teacher
from onestep.methods import METHODS, student_net
from onestep.nets import TeacherHead, build_net

NET = {"name": "mlp", "width": 16, "depth": 1, "temb_dim": 8}


def _cfg(default_config, name: str, init: bool) -> dict:
    cfg = with_method({**default_config, "seed": 0}, {"name": name, "steps": 1})
    cfg = deep_merge(cfg, {"student": {"batch_size": 16, "log_every": 1, "lr": 1e-12, "ema": 0.0, "warmup": 0,
                                       "net": NET, "init_from_teacher": init}, "teacher": {"net": NET}})
    validate(cfg)
    return cfg


def _x0_at_T(teacher: Teacher, z: torch.Tensor) -> torch.Tensor:
    """The teacher's x0 prediction from z at t = T: (z - sqrt(1 - abar_T) eps(z, T)) / sqrt(abar_T)."""
    T = teacher.schedule.T
    a = teacher.schedule.abar[T]
    return (z - (1 - a).sqrt() * teacher.eps(z, torch.full((z.shape[0],), T))) / a.sqrt()


def test_head_starts_as_the_teachers_x0_prediction(default_config):
    cfg = _cfg(default_config, "kd", True)
    sch = Schedule.from_config(cfg["diffusion"])
    torch.manual_seed(0)
    teacher = Teacher(build_net(NET, (2,)), sch)
    student = build_net(student_net(cfg), (2,))
    assert isinstance(student, TeacherHead)
    missing, unexpected = student.start_from(teacher.net)
    assert not missing and not unexpected
    z = torch.randn(32, 2)
    want = _x0_at_T(teacher, z)
    for t in (0, 500, sch.T):  # whatever time the method feeds its generator: the teacher's one-step guess
        got = student(z, torch.full((32,), t))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    fresh = build_net(student_net(cfg), (2,))  # not started from the teacher: another map
    assert not torch.allclose(fresh(z, torch.zeros(32, dtype=torch.long)), want, atol=1e-2)


def test_train_student_starts_from_the_teacher(default_config):
    """Through the trainer (one step at a vanishing lr, no EMA lag): the student's first output is the teacher's x0
    prediction at T; the plain copy stays for a method without a head."""
    from onestep.training.train import train_student

    cfg = _cfg(default_config, "kd", True)
    torch.manual_seed(1)
    teacher = Teacher(build_net(NET, (2,)), Schedule.from_config(cfg["diffusion"]))
    pairs = {"z": torch.randn(64, 2), "x0": torch.randn(64, 2)}
    model, _ = train_student(cfg, teacher, pairs, "cpu", lambda *a, **k: None, progress=False)
    z = torch.randn(16, 2)
    torch.testing.assert_close(model(z, torch.full((16,), 1000)), _x0_at_T(teacher, z), rtol=1e-4, atol=1e-3)
    assert not METHODS["ct"].teacher_head and student_net(_cfg(default_config, "ct", True))["name"] == "mlp"


def test_head_on_images_convnet_and_unet_starts_as_the_teacher():
    """The image nets: the convnet's and the UNet's second-time embedding (temb_s, UNet2DModel's class embedding)
    is zeroed, so the head is the teacher's x0 prediction at T there too."""
    sch = Schedule.from_config({"T": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02})
    a = float(sch.abar[-1])
    for net, shape in (({"name": "convnet", "width": 8, "depth": 1, "temb_dim": 8}, (1, 8, 8)),
                       ({"name": "unet2d", "width": 8, "depth": 1, "norm_num_groups": 4}, (1, 32, 32))):
        torch.manual_seed(0)
        teacher = Teacher(build_net(net, shape), sch)
        head = TeacherHead(shape, net, a**0.5, (1 - a) ** 0.5, sch.T - 1)
        missing, unexpected = head.start_from(teacher.net)
        assert not missing and not unexpected, (missing[:3], unexpected[:3])
        z = torch.randn(2, *shape)
        with torch.no_grad():
            torch.testing.assert_close(head(z, torch.tensor([0, 700])), _x0_at_T(teacher, z), rtol=1e-4, atol=1e-3)
