"""The batches a training step sees: teacher pairs (z, x0), real data, or both, each from its own generator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from onestep import data
from onestep.methods.base import Batch


def data_batches(ds: dict, batch_size: int, gen: torch.Generator, device: str | None = None):
    """Endless minibatches of real data (B, *shape): fresh toy samples, or draws from the image pool
    (held on the GPU when training there: no loader between the data and the device)."""
    pool = None if ds["name"] in data.TOY else data.full(ds)
    if pool is not None and device is not None and torch.device(device).type == "cuda":
        pool = pool.to(device)
    while True:
        if pool is None:
            yield data.TOY[ds["name"]](batch_size, gen)
        else:
            yield pool[torch.randint(0, pool.shape[0], (batch_size,), generator=gen)]


class PairBatches:
    """Endless minibatches of teacher pairs (z, x0), reshuffled each epoch (full batches only).

    Epoch e is shuffled by a permutation seeded by (seed, e), so where the stream stands is one integer,
    `position` (batches drawn so far), which a resume checkpoint saves and restores.
    """

    def __init__(self, pairs: dict[str, torch.Tensor], batch_size: int, seed: int, position: int = 0):
        self.pairs, self.batch_size, self.seed, self.position = pairs, batch_size, seed, position
        self.per_epoch = pairs["z"].shape[0] // batch_size
        if self.per_epoch == 0:
            raise ValueError(f"student.batch_size ({batch_size}) exceeds the number of teacher pairs "
                             f"({pairs['z'].shape[0]}, pairs.num)")
        self._epoch, self._perm = -1, None

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        epoch, i = divmod(self.position, self.per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.pairs["z"].shape[0], generator=gen)
        idx = self._perm[i * self.batch_size:(i + 1) * self.batch_size]  # (B,)
        self.position += 1
        extra = {"traj": self.pairs["xt"][idx]} if "xt" in self.pairs else {}  # (B, M, *shape) DDIM states
        return Batch(self.pairs["z"][idx], self.pairs["x0"][idx], extra=extra)


def map_batch(batch: Batch, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
    """`fn` applied to every tensor of the batch (`extra` included; None stays None)."""
    f = lambda x: None if x is None else fn(x)  # noqa: E731
    return Batch(f(batch.z), f(batch.x0), f(batch.data), {k: f(v) for k, v in batch.extra.items()})


@dataclass
class Streams:
    """A run's random streams: the step's generator `gen` (the method's draws), teacher pair batches
    (`pairs`, None for the teacher) and real data batches (`reals`, None unless the method needs data).
    `gens` names every generator a resume checkpoint saves."""

    gen: torch.Generator
    gens: dict[str, torch.Generator]
    pairs: PairBatches | None
    reals: Iterator[torch.Tensor] | None

    @classmethod
    def open(cls, ds: dict, pairs: dict[str, torch.Tensor] | None, needs_data: bool, batch_size: int, seed: int,
             device: str) -> Streams:
        """Real data (needs_data) come from their own generator when there are pairs, so the pair draws stay
        the same; with no pairs (the teacher) from the step's generator. Pairs and data are held on the GPU
        when training there: no loader in between."""
        gen = torch.Generator().manual_seed(seed)
        on_gpu = torch.device(device).type == "cuda"
        batches = None if pairs is None else PairBatches(
            {k: v.to(device) for k, v in pairs.items()} if on_gpu else pairs, batch_size, seed)
        reals_gen = gen if pairs is None else torch.Generator().manual_seed(seed + 1)
        reals = data_batches(ds, batch_size, reals_gen, device) if needs_data else None
        gens = {"gen": gen} if reals_gen is gen else {"gen": gen, "reals": reals_gen}
        return cls(gen, gens, batches, reals)

    @property
    def position(self) -> int | None:
        """Pair batches drawn so far (None without pairs): where the pair stream stands."""
        return None if self.pairs is None else self.pairs.position

    def next(self, device: str) -> Batch:
        """The next step's batch on `device`: a pair batch (or none), then real data (or none)."""
        b = Batch(None, None) if self.pairs is None else next(self.pairs)
        real = None if self.reals is None else next(self.reals)
        return Batch(*(None if x is None else x.to(device) for x in (b.z, b.x0, real)),
                     {k: v.to(device) for k, v in b.extra.items()})
