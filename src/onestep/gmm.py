"""Gaussian mixtures in 2 to 64 dimensions: their config (`dataset.gmm`), samples, and closed-form diffused density.

A mixture sum_i w_i N(mu_i, diag(v_i)) diffused to noise level sigma (the DDIM variable y = x_t / sqrt(abar_t),
sigma^2 = (1 - abar_t) / abar_t) is sum_i w_i N(mu_i, diag(v_i + sigma^2)); in x_t that is the issue's
q_t(x) = sum_i w_i N(sqrt(abar_t) mu_i, abar_t Sigma_i + (1 - abar_t) I). Its exact epsilon is
eps*(y, sigma) = -sigma grad_y log p_sigma(y) = sigma sum_i r_i(y) (y - mu_i) / (v_i + sigma^2), with the
posterior r_i over components by a log-sum-exp (`eps`). Covariances are diagonal (isotropic: one variance per
component); a full covariance is not supported (its per-sample solve would not reach the cost target).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from onestep.errors import ConfigError

KEY = "dataset.gmm"
DIMS, MODES = (2, 8, 16, 64), (8, 64, 256, 1024)
DEFAULTS = {"dim": 2, "modes": 8, "covariance": "isotropic", "weights": "equal", "rare_modes": 2,
            "rare_weight": 0.01, "std": 0.1, "anisotropy": 3.0, "spread": 1.5, "seed": 0,
            "means": None, "variances": None}
COVARIANCES = ("isotropic", "diagonal")


def _fail(key: str, what: str):
    raise ConfigError(f"{KEY}.{key}: {what}")


def settings(ds: dict) -> dict:
    """`dataset.gmm` with its defaults filled and every key checked (one ConfigError naming the key)."""
    g = ds.get("gmm") or {}
    if not isinstance(g, dict):
        _fail("", f"a mapping of keys, not {g!r}")
    extra = sorted(set(g) - set(DEFAULTS))
    if extra:
        _fail(extra[0], f"unknown key; allowed: {', '.join(DEFAULTS)}")
    g = {**DEFAULTS, **g}
    if g["dim"] not in DIMS:
        _fail("dim", f"{g['dim']!r} is not allowed; allowed: {', '.join(map(str, DIMS))}")
    if g["modes"] not in MODES:
        _fail("modes", f"{g['modes']!r} is not allowed; allowed: {', '.join(map(str, MODES))}")
    if g["covariance"] not in COVARIANCES:
        _fail("covariance", f"{g['covariance']!r} is not allowed; allowed: {', '.join(COVARIANCES)}")
    for k in ("std", "spread", "anisotropy"):
        if not isinstance(g[k], int | float) or g[k] <= 0 or (k == "anisotropy" and g[k] < 1):
            _fail(k, f"{g[k]!r}: a number > 0{' and >= 1' if k == 'anisotropy' else ''}")
    if not isinstance(g["seed"], int) or g["seed"] < 0:
        _fail("seed", f"{g['seed']!r}: an integer >= 0")
    _check_weights(g)
    _check_given(g)
    return g


def _check_weights(g: dict) -> None:
    w, k = g["weights"], g["modes"]
    if isinstance(w, str):
        if w not in ("equal", "unequal"):
            _fail("weights", f"{w!r}: equal, unequal, or a list of {k} weights summing to 1")
        if w == "unequal":
            if not isinstance(g["rare_modes"], int) or not 0 <= g["rare_modes"] < k:
                _fail("rare_modes", f"{g['rare_modes']!r}: an integer in [0, {k})")
            if not 0 < g["rare_weight"] <= 0.01 or g["rare_weight"] * g["rare_modes"] >= 1:
                _fail("rare_weight", f"{g['rare_weight']!r}: in (0, 0.01] (a rare mode holds 1% or less)")
        return
    if not isinstance(w, list | tuple) or len(w) != k:
        _fail("weights", f"a list of {k} weights (modes = {k}), got {w!r:.60}")
    if any(not isinstance(v, int | float) or v < 0 for v in w):
        _fail("weights", "every weight must be a number >= 0")
    if abs(sum(w) - 1) > 1e-6:
        _fail("weights", f"the weights sum to {sum(w):.6g}, not 1")


def _check_given(g: dict) -> None:
    k, d = g["modes"], g["dim"]
    if g["means"] is not None:
        m = g["means"]
        if not isinstance(m, list | tuple) or len(m) != k or any(not isinstance(r, list | tuple) or len(r) != d for r in m):
            _fail("means", f"a list of {k} means of {d} numbers each (modes x dim)")
    if g["variances"] is not None:
        v = g["variances"]
        per = 1 if g["covariance"] == "isotropic" else d
        ok = isinstance(v, list | tuple) and len(v) == k and all(
            (per == 1 and isinstance(r, int | float)) or (isinstance(r, list | tuple) and len(r) == per) for r in v)
        if not ok:
            _fail("variances", f"a list of {k} {'numbers' if per == 1 else f'lists of {d} numbers'} "
                               f"({g['covariance']} covariance)")
        flat = [x for r in v for x in (r if isinstance(r, list | tuple) else [r])]
        if any(not isinstance(x, int | float) or x <= 0 for x in flat):
            _fail("variances", "the covariance is not positive definite: every variance must be > 0")


@dataclass(frozen=True)
class Mixture:
    """Weights (K,), means (K, d) and diagonal variances (K, d), float64; `isotropic`: v_i equal across d; `tied`:
    one variance for every component and axis (decided once where the mixture is built, not per call: a test of the
    tensors would sync the device on every teacher call)."""

    weights: torch.Tensor
    means: torch.Tensor
    variances: torch.Tensor
    isotropic: bool
    tied: bool = False

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """n samples (n, d) float32 and nothing else drawn from `gen` beyond the component and the noise."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=gen)  # (n,)
        z = torch.randn(n, self.dim, generator=gen, dtype=torch.float64)
        return (self.means[k] + self.variances[k].sqrt() * z).float()

    def log_joint(self, y: torch.Tensor, sigma2: torch.Tensor | float = 0.0) -> torch.Tensor:
        """log w_i N(y; mu_i, diag(v_i + sigma^2)) for every sample and component (B, K); sigma2 (B,) or scalar.
        The direct (B, K, d) form: the reference the fast `eps` is tested against, and the metrics'."""
        y = y.to(self.means)
        s2 = torch.as_tensor(sigma2, dtype=y.dtype, device=y.device).reshape(-1, 1, 1)
        v = self.variances[None] + s2  # (B or 1, K, d)
        quad = ((y[:, None] - self.means[None]) ** 2 / v).sum(-1)  # (B, K)
        return self.weights.log()[None] - 0.5 * (quad + v.log().sum(-1) + self.dim * math.log(2 * math.pi))

    def log_prob(self, y: torch.Tensor, sigma2: torch.Tensor | float = 0.0) -> torch.Tensor:
        """log p_sigma(y) (B,)."""
        return torch.logsumexp(self.log_joint(y, sigma2), dim=1)

    def posterior(self, y: torch.Tensor) -> torch.Tensor:
        """r_i(y) over components at sigma 0 (B, K)."""
        return torch.softmax(self.log_joint(y), dim=1)

    def to(self, dtype=None, device=None) -> Mixture:
        return Mixture(*(t.to(dtype=dtype, device=device) for t in (self.weights, self.means, self.variances)),
                       self.isotropic, self.tied)


def mixture(ds: dict) -> Mixture:
    """The mixture of a dataset section (name gmm): seeded means (uniform in [-spread, spread]^d), component stds
    log-uniform in [std / a, std * a] with a = sqrt(anisotropy) (diagonal: per axis; isotropic: per component),
    weights equal or unequal (rare_modes components at rare_weight each, the rest uniform(0.5, 1.5) then
    normalised); `means`, `variances` or a weights list given in the config replace the drawn ones."""
    g = settings(ds)
    k, d = g["modes"], g["dim"]
    gen = torch.Generator().manual_seed(g["seed"])
    means = (torch.rand(k, d, generator=gen, dtype=torch.float64) * 2 - 1) * g["spread"]
    a = math.log(math.sqrt(g["anisotropy"]))
    iso = g["covariance"] == "isotropic"
    logs = (torch.rand(k, 1 if iso else d, generator=gen, dtype=torch.float64) * 2 - 1) * a
    var = ((g["std"] * logs.exp()) ** 2).expand(k, d).clone()
    raw = torch.rand(k, generator=gen, dtype=torch.float64) + 0.5
    if g["means"] is not None:
        means = torch.tensor(g["means"], dtype=torch.float64)
    if g["variances"] is not None:
        var = torch.tensor(g["variances"], dtype=torch.float64).reshape(k, -1).expand(k, d).clone()
    return Mixture(_weights(g, raw), means, var, iso, iso and bool((var == var[0, 0]).all()))


def _weights(g: dict, raw: torch.Tensor) -> torch.Tensor:
    k, w = g["modes"], g["weights"]
    if not isinstance(w, str):
        t = torch.tensor(w, dtype=torch.float64)
        return t / t.sum()
    if w == "equal":
        return torch.full((k,), 1.0 / k, dtype=torch.float64)
    r = g["rare_modes"]
    rest = raw[r:] / raw[r:].sum() * (1 - r * g["rare_weight"])
    return torch.cat([torch.full((r,), float(g["rare_weight"]), dtype=torch.float64), rest])


def eps(mix: Mixture, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """eps*(y, sigma) (B, d) of the mixture diffused to sigma (B,), in y's dtype and device: a log-sum-exp over
    components; isotropic components by two (B, d) x (d, K) products (one exp per sample and component when they share
    one variance), diagonal ones by the same per distinct sigma."""
    m = mix.to(y.dtype, y.device)
    if mix.isotropic:
        fn = _eps_tied if m.tied else _eps_iso
        return _chunked(fn, m, y, sigma.to(y))
    out = torch.empty_like(y)
    levels, inv = torch.unique(sigma.to(y), return_inverse=True)
    for j, s in enumerate(levels):
        rows = (inv == j).nonzero().squeeze(1)
        out[rows] = _eps_diag(m, y[rows], s)
    return out


CHUNK_ELEMENTS = 1 << 19  # rows x components per block: the (rows, K) logits stay in cache (4x faster at 1024 modes)
_MIN_ROWS = 64


def _chunked(fn, m: Mixture, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """fn over row blocks of about CHUNK_ELEMENTS / K rows (at least _MIN_ROWS); one block on a GPU, whose memory is not
    the bottleneck."""
    rows = y.shape[0] if y.is_cuda else max(_MIN_ROWS, CHUNK_ELEMENTS // m.weights.shape[0])
    if y.shape[0] <= rows:
        return fn(m, y, sigma)
    return torch.cat([fn(m, y[i:i + rows], sigma[i:i + rows]) for i in range(0, y.shape[0], rows)])


def _eps_tied(m: Mixture, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """One variance v shared by every component and axis: the posterior is softmax(log w + (y.mu - |mu|^2 / 2) / v),
    |y|^2 and log v cancelling; one (B, d) x (d, K) product each way, one exp per sample and component."""
    v = (m.variances[0, 0] + sigma * sigma)[:, None]  # (B, 1)
    logits = torch.addmm(m.weights.log()[None] * v - 0.5 * (m.means * m.means).sum(1)[None], y, m.means.T) / v
    r = torch.softmax(logits, dim=1)  # (B, K)
    return (sigma[:, None] / v) * (y - r @ m.means)


def _eps_iso(m: Mixture, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s2 = (sigma * sigma)[:, None]  # (B, 1)
    v = m.variances[:, 0][None] + s2  # (B, K)
    d = m.dim
    yy = (y * y).sum(1, keepdim=True)  # (B, 1)
    quad = (yy - 2 * y @ m.means.T + (m.means * m.means).sum(1)[None]) / v  # (B, K)
    r = torch.softmax(m.weights.log()[None] - 0.5 * (quad + d * v.log()), dim=1)  # (B, K)
    rv = r / v
    return sigma[:, None] * (y * rv.sum(1, keepdim=True) - rv @ m.means)


def _eps_diag(m: Mixture, y: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    w = 1.0 / (m.variances + sigma * sigma)  # (K, d)
    mw = m.means * w
    quad = (y * y) @ w.T - 2 * y @ mw.T + (m.means * mw).sum(1)[None]  # (B, K)
    r = torch.softmax(m.weights.log()[None] - 0.5 * (quad - w.log().sum(1)[None]), dim=1)
    return sigma * (y * (r @ w) - r @ mw)


def sample(ds: dict, n: int, gen: torch.Generator) -> torch.Tensor:
    """n samples of the dataset section's mixture (n, d)."""
    return mixture(ds).sample(n, gen)


def shape(ds: dict) -> tuple[int, ...]:
    return (settings(ds)["dim"],)


def dataset_id(ds: dict) -> str:
    """The mixture's name in output paths: gmm<d>d-<K>, then -diag, -unequal, -s<seed> where they apply, and a
    short hash of the keys when means, variances or a weights list are given (so no two mixtures share a folder)."""
    import hashlib
    import json

    g = settings(ds)
    out = f"gmm{g['dim']}d-{g['modes']}" + ("-diag" if g["covariance"] == "diagonal" else "")
    out += "-unequal" if g["weights"] == "unequal" else ""
    out += f"-s{g['seed']}" if g["seed"] else ""
    named = ("dim", "modes", "covariance", "seed") + (("weights",) if isinstance(g["weights"], str) else ())
    given = {k: g[k] for k in DEFAULTS if k not in named and g[k] != DEFAULTS[k]}
    if given:
        out += "-" + hashlib.sha256(json.dumps(given, sort_keys=True).encode()).hexdigest()[:6]
    return out
