"""Files that survive faults: checkpoints and array files carry a SHA-256 checked on load (a corrupt or
truncated one is named with what to do), and a full or read-only results folder is named, with no
temporary file left behind."""

import errno

import numpy as np
import pytest
import torch

from onestep import outputs
from onestep.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from onestep.errors import OnestepError
from onestep.nets import build_net
from onestep.training.resume import load_resume, save_resume
from onestep.training.state import LoopState

NET = {"name": "mlp", "width": 128, "depth": 3, "temb_dim": 64}  # config/config.yaml's student: ~0.4 MB


def zero_middle(path, n: int = 4096) -> None:
    """4 KiB of zeros in the middle of the file (a bad sector, a partial overwrite)."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + n] = bytes(n)
    path.write_bytes(bytes(data))


def test_checkpoint_with_zeros_in_the_middle_is_refused_by_name(default_config, tmp_path):
    path = tmp_path / "student.pt"
    torch.manual_seed(0)
    save_checkpoint(path, "student", NET, (2,), default_config, build_net(NET, (2,)))
    load_checkpoint(path, "student")  # intact: loads
    zero_middle(path)
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} is corrupt.*delete it and re-run the target"):
        load_checkpoint(path, "student")
    assert path.exists()  # reported, never deleted


def test_resume_checkpoint_with_zeros_in_the_middle_is_refused(default_config, tmp_path):
    path = tmp_path / "resume.pt"
    net = build_net(NET, (2,))
    opt = torch.optim.Adam(net.parameters())
    net(torch.zeros(4, 2), torch.zeros(4)).sum().backward()
    opt.step()
    save_resume(path, default_config, {"student": net, "opt": opt}, {"g": torch.Generator().manual_seed(1)},
                LoopState(step=10, extra={"rows": [{"step": 10, "loss": 0.5}]}))
    assert load_resume(path, default_config)["step"] == 10
    zero_middle(path)
    with pytest.raises(CheckpointError, match=rf"resume checkpoint {path} is corrupt.*delete it to train from scratch"):
        load_resume(path, default_config)


def test_truncated_or_damaged_pairs_file_is_refused_by_name(tmp_path):
    path = tmp_path / "pairs.npz"
    g = np.random.default_rng(0)
    outputs.save_npz(path, z=g.standard_normal((4096, 2)).astype(np.float32),
                     x0=g.standard_normal((4096, 2)).astype(np.float32))
    assert outputs.load_pairs(path)["z"].shape == (4096, 2)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # truncated (a full disk, a copy cut short)
    with pytest.raises(OnestepError, match=rf"{path} is corrupt or truncated.*re-generate the teacher pairs"):
        outputs.load_pairs(path)
    path.write_bytes(whole)
    zero_middle(path, 1024)  # damaged inside the array data: the zip still opens
    with pytest.raises(OnestepError, match=rf"{path} is corrupt.*re-generate the teacher pairs"):
        outputs.load_pairs(path)


@pytest.mark.parametrize("code, need", [(errno.ENOSPC, "free disk space"), (errno.EROFS, "a writable file system"),
                                        (errno.EACCES, "write permission")])
def test_full_or_read_only_folder_names_the_path_and_leaves_no_temporary_file(tmp_path, monkeypatch, code, need):
    """A write that fails half-way (the disk fills up, the folder is read-only): one message naming the
    output and what it needs; no *.tmp file left behind for a later run to trip over."""
    def fail(self, data, *a, **k):
        with open(self, "w") as f:
            f.write(data[: len(data) // 2])  # half written, then the file system refuses
        raise OSError(code, "simulated")

    monkeypatch.setattr("pathlib.Path.write_text", fail)
    target = tmp_path / "run" / "metrics.json"
    with pytest.raises(outputs.WriteError, match=rf"cannot write {target}: simulated; it needs {need}.*out:"):
        outputs.write_json(target, {"swd": 0.5})
    assert list((tmp_path / "run").iterdir()) == []

    def fail_save(obj, f, *a, **k):
        open(f, "wb").write(b"partial")
        raise OSError(code, "simulated")

    monkeypatch.setattr(torch, "save", fail_save)
    with pytest.raises(OnestepError, match=rf"cannot write {tmp_path / 'run' / 'student.pt'}"):
        save_checkpoint(tmp_path / "run" / "student.pt", "student", NET, (2,), {}, build_net(NET, (2,)))
    assert list((tmp_path / "run").iterdir()) == []


@pytest.mark.parametrize("damage", ["zeros", "truncated"])
def test_corrupt_feature_classifier_is_refused_by_name(tmp_path, damage):
    """features.pt (the image tiers' classifier behind FID) was a bare torch.save: zeros in it loaded silently
    and moved every FID. It now carries a SHA-256 like the checkpoints; a damaged or truncated one is named
    with what to do, and left in place."""
    from onestep.features import FeatureNet, load_feature_net, save_feature_net

    path = tmp_path / "features.pt"
    torch.manual_seed(0)
    net = FeatureNet((1, 8, 8), num_classes=10)
    save_feature_net(path, net, 0.9)
    loaded = load_feature_net(path)  # intact: loads, same weights
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values(), strict=True))
    if damage == "zeros":
        zero_middle(path, 256)
    else:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=rf"feature classifier {path} is corrupt.*delete it and re-run the "
                                              r"target to retrain \(snakemake re-runs the job that writes features.pt\)"):
        load_feature_net(path)
    assert path.exists()
