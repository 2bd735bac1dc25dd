"""A deterministic, resumable stream of micro-batches with bad items skipped and counted.

Epoch ``e`` visits the dataset in ``randperm(N, generator=seed_e)`` order; rank ``r`` of ``w`` takes every w-th
index starting at r. ``position`` counts the items of this rank's share already consumed *including skipped
ones*, so (epoch, position) names the exact place to continue. Items are produced by a torch DataLoader (workers
keep order), and grouped into batches of ``batch_size`` valid items here, so a skipped item never shortens a
batch. Prefetched but unconsumed items are simply recomputed after a resume (each item is a pure function of
(seed, epoch, index)).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator

import torch

from ..seeding import derive_seed
from .dataset import FaceDataset, Skip, collate

log = logging.getLogger(__name__)


def epoch_order(n: int, seed: int, epoch: int, rank: int = 0, world: int = 1) -> list[int]:
    """This rank's item indices for ``epoch`` (a seeded permutation, strided by rank)."""
    g = torch.Generator().manual_seed(derive_seed(seed, epoch, 0xE90C))
    return torch.randperm(n, generator=g).tolist()[rank::world]


def _identity(x):
    return x


class _View(torch.utils.data.Dataset):
    def __init__(self, ds: FaceDataset, indices: list[int], epoch: int):
        self.ds, self.indices, self.epoch = ds, indices, epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.ds.item(self.indices[i], self.epoch)


class BatchStream:
    """Iterate with ``next_batch()``; read/restore ``epoch``, ``position``, ``skipped`` for checkpoints."""

    def __init__(
        self,
        ds: FaceDataset,
        batch_size: int,
        *,
        seed: int,
        num_workers: int = 0,
        rank: int = 0,
        world: int = 1,
        epoch: int = 0,
        position: int = 0,
        skipped: dict[str, int] | None = None,
        warn_limit: int = 20,
    ):
        if len(ds) == 0:
            raise ValueError("the training set is empty: check data.folders / data.manifests (paths, file types)")
        self.ds, self.batch_size, self.seed = ds, batch_size, seed
        self.num_workers, self.rank, self.world = num_workers, rank, world
        self.epoch, self.position = epoch, position
        self.skipped: Counter = Counter(skipped or {})
        self.warn_limit = warn_limit
        self._it: Iterator | None = None
        self._valid_this_epoch = 0
        self._opened_at = position

    def _open(self) -> None:
        order = epoch_order(len(self.ds), self.seed, self.epoch, self.rank, self.world)
        view = _View(self.ds, order[self.position :], self.epoch)
        loader = torch.utils.data.DataLoader(
            view,
            batch_size=None,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=_identity,
            prefetch_factor=4 if self.num_workers else None,
        )
        self._it = iter(loader)
        self._valid_this_epoch = 0
        self._opened_at = self.position

    def _next_item(self) -> dict:
        while True:
            if self._it is None:
                self._open()
            try:
                item = next(self._it)
            except StopIteration:
                if self._valid_this_epoch == 0 and self._opened_at == 0:
                    raise ValueError(
                        f"no usable training item in a whole epoch ({dict(self.skipped)} skipped); "
                        "fix the data or relax data.min_size / allow_grayscale / missing_caption"
                    ) from None
                self.epoch, self.position, self._it = self.epoch + 1, 0, None
                continue
            self.position += 1
            if isinstance(item, Skip):
                self.skipped[item.reason] += 1
                total = sum(self.skipped.values())
                if total <= self.warn_limit or total % 1000 == 0:
                    log.warning(
                        "skipped %s (%s%s); skipped so far: %s",
                        item.key,
                        item.reason,
                        f": {item.detail}" if item.detail else "",
                        dict(self.skipped),
                    )
                continue
            self._valid_this_epoch += 1
            return item

    def next_batch(self) -> dict:
        """A collated batch of ``batch_size`` valid items (see dataset.collate)."""
        return collate([self._next_item() for _ in range(self.batch_size)])

    def close(self) -> None:
        self._it = None
