"""Which code made a result: the package's version (git commit and dirty flag, else a hash of its sources) and
the hash of exactly the source files one job runs (a rule's param: a change in that code re-runs the job).

A job's files are the closure of the package's imports from its entry modules, followed only through the
maths (MATHS: methods, training loop, diffusion, nets, data, evaluation), never through the registry of
methods (`onestep.methods`, which imports them all): a run's jobs add their method's own file (its class's
source file), so an edit of one method's file changes the hash of that method's runs alone, while an edit of
the shared maths (methods/base.py, common.py, losses.py, diffusion.py, nets.py, training/) changes every run's.
Side channels (MLflow, logs, the CLI, config parsing) are outside every hash: a change there re-runs nothing.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import subprocess
from functools import cache, lru_cache
from pathlib import Path

PKG = Path(__file__).resolve().parent
MATHS = ("onestep.methods.", "onestep.training.", "onestep.diffusion", "onestep.nets", "onestep.data",
         "onestep.accel", "onestep.evaluate", "onestep.metrics", "onestep.features", "onestep.pretrained")
REGISTRY = "onestep.methods"  # imports every method: never followed (a run's job names its method's file)
# a job kind -> the modules it enters the maths through (the stage functions' imports)
ENTRIES = {
    "train": ("onestep.training.train",),
    "evaluate": ("onestep.evaluate", "onestep.metrics", "onestep.features"),
    "teacher": ("onestep.training.train", "onestep.pretrained"),
    "pairs": ("onestep.diffusion", "onestep.data"),
    "trajectory": ("onestep.diffusion", "onestep.data"),
    "features": ("onestep.features",),
    "reference": ("onestep.evaluate", "onestep.metrics", "onestep.features"),
    "teacher_eval": ("onestep.evaluate", "onestep.metrics", "onestep.features"),
}
PER_METHOD = ("train", "evaluate")  # kinds whose files add the run's method's own file


def module_file(name: str) -> Path | None:
    """The source file of a module of the package (None: not one of its modules)."""
    rel = Path(*name.split(".")[1:]) if name.startswith("onestep.") else None
    if rel is None:
        return None
    for f in (PKG / rel.with_suffix(".py"), PKG / rel / "__init__.py"):
        if f.is_file():
            return f
    return None


def module_name(path: Path) -> str:
    parts = Path(path).resolve().relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The modules `path` imports anywhere (inside functions too), relative imports resolved; `from a import b`
    counts as a.b where that is a module, else a."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            out |= {f"{base}.{a.name}" if module_file(f"{base}.{a.name}") else base for a in node.names}
    return out


def _followed(name: str) -> bool:
    return name != REGISTRY and any(name == m.rstrip(".") or name.startswith(m) for m in MATHS)


def closure(files) -> list[Path]:
    """`files` and every module of the maths they import, transitively (sorted)."""
    seen, todo = set(), [Path(f).resolve() for f in files]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo += [m for n in _imports(f) if _followed(n) and (m := module_file(n)) is not None]
    return sorted(seen)


def files_hash(files) -> str:
    """16 hex digits of SHA-256 over the files' paths (relative to the package) and contents."""
    h = hashlib.sha256()
    for f in sorted(Path(f).resolve() for f in files):
        h.update(str(f.relative_to(PKG)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def job_files(kind: str, method: type | None = None) -> list[Path]:
    """The source files a job of `kind` runs; for a run's jobs (PER_METHOD) with its method's class's file."""
    entries = [module_file(m) for m in ENTRIES[kind]]
    if kind == "teacher":
        from onestep.methods import TEACHER

        method = TEACHER
    if method is not None:
        entries.append(Path(inspect.getsourcefile(method)))
    return closure(entries)


@cache
def job_hash(kind: str, method: type | None = None) -> str:
    """The hash of the files a job of `kind` runs (job_files): a rule's param, so a change there re-runs it."""
    return files_hash(job_files(kind, method))


def git(*args: str) -> str | None:
    """`git -C <package> args...`'s output, or None outside git (or without git)."""
    try:
        out = subprocess.run(["git", "-C", str(PKG), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@lru_cache(maxsize=1)
def version() -> dict:
    """The package's version: its git commit and whether its sources differ from it (dirty: an edited or new
    file under the package), and always the hash of all its sources (what identifies code outside git)."""
    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", ".") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status),
            "source_hash": files_hash(sorted(PKG.rglob("*.py")))}


def label(v: dict | None = None) -> str:
    """One short label of a version: `<commit 12>` (+`-dirty`), or `src-<source hash>` outside git."""
    v = version() if v is None else v
    return f"{v['commit'][:12]}{'-dirty' if v['dirty'] else ''}" if v.get("commit") else f"src-{v['source_hash']}"


def record(kind: str, method: type | None = None) -> dict:
    """What a result file records about its code: the package's version and the job's own code hash."""
    return {**version(), "label": label(), "job": kind, "code_hash": job_hash(kind, method)}


def of_run(kind: str, cfg: dict) -> dict:
    """`record` of a run's job (train, evaluate): its method's class from the run's config."""
    from onestep.methods import METHODS

    return record(kind, METHODS[cfg["method"]["name"]])


def rule_param(kind: str, plan=None):
    """A rule's param `code` (workflow.code): job_hash of `kind`, so Snakemake's params trigger re-runs the job
    when that code changes; for a run's jobs (PER_METHOD), a function of the run's wildcards (its method)."""
    if kind not in PER_METHOD:
        return job_hash(kind)
    from onestep.methods import METHODS

    return lambda w: job_hash(kind, METHODS[plan.runs[(w.ablation, w.run)].config["method"]["name"]])
