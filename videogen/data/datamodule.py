"""``VideoDataModule``: the one LightningDataModule every recipe points at.

It takes ready dataset objects, or, from a LightningCLI recipe, ``class_path``/``init_args`` blocks
that jsonargparse instantiates (the arguments are typed ``torch.utils.data.Dataset``):

.. code-block:: yaml

    data:
      class_path: videogen.data.VideoDataModule
      init_args:
        dataset:
          class_path: videogen.data.SyntheticVideoDataset
          init_args: {num_videos: 1000, num_frames: 16, size: 32}
        val_fraction: 0.1
        batch_size: 32

Items are dicts (see ``docs/architecture.md``); :func:`videogen.data.collate` (PyTorch's default
collation, uint8 videos kept channels-last) stacks tensors and turns captions into a list of str.

A streaming ``IterableDataset`` (``videogen.data.WebVideoShards``) is taken as it is: it shuffles and
splits itself over ranks and workers; the module tells it the rank, world size and batch size
(``set_distributed``) and, each epoch, the epoch (``set_epoch``), and its loader resumes mid-epoch
through ``skip_next``.
"""

from __future__ import annotations

import logging
import os

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, Subset, random_split

from .collation import collate

__all__ = ["EpochSampler", "ResumableDataLoader", "VideoDataModule"]

log = logging.getLogger(__name__)


class EpochSampler(DistributedSampler):
    """``DistributedSampler`` whose next pass can skip its first ``n`` indices (mid-epoch resume)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._skip = 0

    def skip_next(self, n: int) -> None:
        self._skip = int(n)

    def __iter__(self):
        indices = list(super().__iter__())
        skip, self._skip = self._skip, 0
        return iter(indices[skip:])


class ResumableDataLoader(DataLoader):
    """The training loader: Lightning sees it as stateful (``state_dict``/``load_state_dict``), so a run
    resumed from a mid-epoch checkpoint continues the interrupted epoch where it stopped, in the same
    epoch-seeded order, instead of starting that epoch's order again.

    ``consumed()`` gives the batches the interrupted epoch had taken (Lightning's restored progress).
    Over a streaming dataset (an ``IterableDataset`` with ``set_epoch`` / ``skip_next``), ``epoch()``
    gives the epoch each pass is told, and the resume skip is the dataset's.
    """

    def __init__(self, *args, consumed=None, epoch=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._consumed, self._epoch, self._resume = consumed, epoch, False

    def state_dict(self) -> dict:
        return {"kind": "videogen.ResumableDataLoader"}

    def load_state_dict(self, state: dict) -> None:
        self._resume = True

    def __iter__(self):
        stream = isinstance(self.dataset, IterableDataset)
        if stream and self._epoch is not None and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(int(self._epoch()))  # before the workers start their pass
        if self._resume:
            self._resume = False
            n = int(self._consumed()) if self._consumed is not None else 0
            # n == len(self): the checkpoint was saved on the epoch's last batch, and Lightning goes on with
            # the next epoch, which must not lose its first n batches (it would skip that whole epoch)
            if 0 < n < _sized_len(self, n + 1):
                if isinstance(self.sampler, EpochSampler):
                    self.sampler.skip_next(n * self.batch_size)
                elif stream and hasattr(self.dataset, "skip_next"):
                    self.dataset.skip_next(n, self.batch_size)
        return super().__iter__()


def _sized_len(obj, default: int) -> int:
    """``len(obj)``, or ``default`` for a stream without a length."""
    try:
        return len(obj)
    except TypeError:
        return default


def _base(dataset: Dataset) -> Dataset:
    """The dataset under any ``Subset`` wrappers (a val_fraction split shares its base with train)."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


class VideoDataModule(L.LightningDataModule):
    """Train/val/test/predict loaders over video datasets.

    Args:
        dataset: the training dataset.
        val_dataset, test_dataset, predict_dataset: optional; without ``val_dataset``, a
            ``val_fraction`` > 0 splits the training set with ``split_seed`` (the same split every run).
            ``predict_dataset`` defaults to the test, then the validation set.
        batch_size: training batch size; ``eval_batch_size`` (default: the same) for the others.
        num_workers, pin_memory, persistent_workers: passed to every ``DataLoader``
            (``persistent_workers`` only takes effect with ``num_workers > 0``).
        shuffle: shuffle the training set each epoch.  The order of epoch ``e`` is a function of
            ``(shuffle_seed, e)`` only (a seeded ``DistributedSampler``, one shard per rank), so a run
            resumed at an epoch boundary sees the same batches as an uninterrupted one.
        shuffle_seed: seed of that order; ``None`` takes ``PL_GLOBAL_SEED`` (the recipe's
            ``seed_everything``), else 0.
        drop_last: drop the last incomplete training batch.

    A streaming dataset (``IterableDataset``) shuffles itself (``shuffle``/``shuffle_seed`` do not apply)
    and cannot be split by ``val_fraction``.
    """

    def __init__(
        self,
        dataset: Dataset,
        val_dataset: Dataset | None = None,
        test_dataset: Dataset | None = None,
        predict_dataset: Dataset | None = None,
        val_fraction: float = 0.0,
        split_seed: int = 0,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        shuffle: bool = True,
        drop_last: bool = False,
        shuffle_seed: int | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if val_fraction > 0 and val_dataset is not None:
            raise ValueError("give either val_dataset or val_fraction > 0, not both")
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1) or num_workers < 0:
            raise ValueError(f"batch sizes must be >= 1 and num_workers >= 0, got {batch_size}, "
                             f"{eval_batch_size}, {num_workers}")
        self.dataset, self.val_dataset, self.test_dataset = dataset, val_dataset, test_dataset
        self.predict_dataset = predict_dataset
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.persistent_workers, self.shuffle, self.drop_last = persistent_workers, shuffle, drop_last
        self.shuffle_seed = shuffle_seed
        self.train_dataset: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        """Check the datasets are non-empty and make the (seeded) validation split once."""
        if self.train_dataset is not None:
            return
        if isinstance(self.dataset, IterableDataset):
            if self.val_fraction > 0:
                raise ValueError(f"val_fraction cannot split the stream {type(self.dataset).__name__}: give "
                                 "a val_dataset")
            n = _sized_len(self.dataset, 1)
        else:
            n = len(self.dataset)
        if n == 0:
            raise ValueError(f"training dataset {type(self.dataset).__name__} is empty")
        if self.val_fraction > 0:
            n_val = max(1, round(n * self.val_fraction))
            if n_val >= n:
                raise ValueError(f"val_fraction {self.val_fraction} of {n} items leaves no training items")
            generator = torch.Generator().manual_seed(self.split_seed)
            self.train_dataset, self.val_dataset = random_split(self.dataset, [n - n_val, n_val], generator)
        else:
            self.train_dataset = self.dataset
        for name in ("val_dataset", "test_dataset", "predict_dataset"):
            ds = getattr(self, name)
            if ds is not None and _sized_len(ds, 1) == 0:
                raise ValueError(f"{name} {type(ds).__name__} is empty")

    def _train_sampler(self, dataset: Dataset) -> EpochSampler | None:
        """Epoch-seeded shuffling (Lightning calls ``set_epoch``), sharded over the trainer's ranks.

        Lightning leaves a ``DistributedSampler`` in place, so this one is used with and without DDP.
        """
        if not self.shuffle or isinstance(dataset, IterableDataset):
            return None
        world, rank = self._world()
        seed = self.shuffle_seed if self.shuffle_seed is not None else int(os.environ.get("PL_GLOBAL_SEED",
                                                                                          0))
        return EpochSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed)

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _loader(self, dataset: Dataset | None, train: bool) -> DataLoader:
        if dataset is None:
            return []  # Lightning skips a stage whose loader is empty
        batch_size = self.batch_size if train else self.eval_batch_size
        if isinstance(dataset, IterableDataset) and hasattr(dataset, "set_distributed"):
            world, rank = self._world()
            dataset.set_distributed(rank, world, batch_size)
        extra = {"consumed": self._consumed_batches, "epoch": self._current_epoch} if train else {}
        return (ResumableDataLoader if train else DataLoader)(
            dataset,
            **extra,
            batch_size=batch_size,
            sampler=self._train_sampler(dataset) if train else None,
            drop_last=self.drop_last and train,
            collate_fn=collate,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )

    def _current_epoch(self) -> int:
        return 0 if self.trainer is None else int(self.trainer.current_epoch)

    def _consumed_batches(self) -> int:
        trainer = self.trainer
        return 0 if trainer is None else int(trainer.fit_loop.epoch_loop.batch_progress.current.ready)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.train_dataset, train=True)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.val_dataset, train=False)

    def test_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.test_dataset, train=False)

    def predict_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.predict_dataset or self.test_dataset or self.val_dataset, train=False)

    def skipped_counts(self) -> dict[str, int]:
        """Unreadable items skipped so far per split (datasets that do not count report 0).

        Splits cut from one dataset by ``val_fraction`` share its count; it is reported under ``train``.
        """
        splits = {"train": self.train_dataset or self.dataset, "val": self.val_dataset,
                  "test": self.test_dataset, "predict": self.predict_dataset}
        counts, seen = {}, set()
        for name, ds in splits.items():
            if ds is not None and id(_base(ds)) not in seen:
                seen.add(id(_base(ds)))
                counts[name] = int(getattr(_base(ds), "num_skipped", 0))
        return counts

    def teardown(self, stage: str | None = None) -> None:
        """Log how many unreadable items were skipped (a warning when any were)."""
        counts = self.skipped_counts()
        total = sum(counts.values())
        (log.warning if total else log.info)("VideoDataModule skipped %d unreadable items: %s", total, counts)
