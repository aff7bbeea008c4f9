"""Frechet Video Distance, Kernel Video Distance and grouped FVD (cFVD / sFVD) on I3D features.

Both metrics store the per-video features (float64) of every ``update`` as torchmetrics ``cat`` states,
so under DDP ``compute()`` sees all ranks' features. A ``DistributedSampler`` pads the last batch by
repeating dataset items; pass the dataset ``index`` of each video to ``update`` and duplicates are dropped
after the gather, so the number does not depend on the number of processes (see docs/metrics.md).

The preprocessing is an explicit, recorded option because it changes the numbers: ``resize="direct"``
(TATS, LVDM: bilinear straight to 224x224) or ``resize="center_crop"`` (VideoGPT, PVDM, CMD: bilinear
resize of the short side to 224, then a centre crop). ``compute()`` also records the protocol (numbers of
videos and frames, resize mode, covariance normalisation) in ``.protocol``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from ..video import check_video
from .frechet import feature_statistics, frechet_distance
from .i3d import load_i3d

__all__ = [
    "FrechetVideoDistance",
    "KernelVideoDistance",
    "grouped_fvd",
    "polynomial_mmd",
    "preprocess_videos",
]

RESIZE_MODES = ("direct", "center_crop")
COV_NORMALIZATIONS = ("unbiased", "biased")


def _check_videos(videos: torch.Tensor) -> None:
    """Raise ValueError unless videos are (B, C in {1, 3}, T, H, W) float in [-1, 1]."""
    check_video(videos, "videos")
    if videos.shape[1] not in (1, 3):
        raise ValueError(f"videos must have 1 or 3 channels (B, C, T, H, W), got {tuple(videos.shape)}")


def preprocess_videos(videos: torch.Tensor, resize: str = "direct", size: int = 224) -> torch.Tensor:
    """Validate (B, C, T, H, W) float videos in [-1, 1] and resize every frame to size x size (bilinear).

    Single-channel videos are repeated to 3 channels (as StyleGAN-V does for grayscale data).
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    _check_videos(videos)
    return _resize_frames(videos, resize, size)


def _resize_frames(videos: torch.Tensor, resize: str, size: int) -> torch.Tensor:
    b, c, t, h, w = videos.shape
    frames = videos.transpose(1, 2).reshape(b * t, c, h, w)  # (B, C, T, H, W) -> (B*T, C, H, W)
    if resize == "direct":
        target = (size, size)
    else:  # short side to `size`, long side rounded up, then centre crop
        scale = size / min(h, w)
        target = (size, math.ceil(w * scale)) if h <= w else (math.ceil(h * scale), size)
    if target != (h, w):
        frames = F.interpolate(frames.float(), size=target, mode="bilinear", align_corners=False)
    top, left = (frames.shape[2] - size) // 2, (frames.shape[3] - size) // 2
    frames = frames[:, :, top : top + size, left : left + size]
    if c == 1:
        frames = frames.expand(-1, 3, -1, -1)
    return frames.reshape(b, t, 3, size, size).transpose(1, 2)  # -> (B, 3, T, size, size)


def polynomial_mmd(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 between feature sets x (m, d) and y (n, d), kernel k(a, b) = (a.b / d + 1)^3."""
    x, y = x.double(), y.double()
    m, n, d = x.shape[0], y.shape[0], x.shape[1]
    if m < 2 or n < 2:
        raise ValueError(f"unbiased MMD needs at least 2 samples per set, got {m} and {n}")
    k_xx = (x @ x.T / d + 1) ** 3  # (m, m)
    k_yy = (y @ y.T / d + 1) ** 3  # (n, n)
    k_xy = (x @ y.T / d + 1) ** 3  # (m, n)
    term_xx = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    term_yy = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return float(term_xx + term_yy - 2 * k_xy.mean())


def grouped_fvd(real_feats, fake_feats, real_groups: Sequence, fake_groups: Sequence,
                unbiased: bool = True, eps: float = 1e-6) -> tuple[float, float, dict]:
    """FVD per group (class for cFVD, subject for sFVD), reported as mean and std over groups.

    Args:
        real_feats, fake_feats: (N_real, D) and (N_fake, D) features.
        real_groups, fake_groups: one hashable label per row (list, array or 1-D tensor).
        unbiased: covariance normalisation (N-1 if True, N if False).

    Returns:
        ``(mean, std, per_group)``; std is the population std (ddof=0) over the groups, per_group maps each
        label to its FVD. Every group must occur in both sets with at least 2 videos.
    """
    real_feats, fake_feats = torch.as_tensor(real_feats), torch.as_tensor(fake_feats)
    real_groups, fake_groups = _labels(real_groups), _labels(fake_groups)
    if len(real_groups) != real_feats.shape[0] or len(fake_groups) != fake_feats.shape[0]:
        raise ValueError("need exactly one group label per feature row")
    if set(real_groups) != set(fake_groups):
        missing = set(real_groups) ^ set(fake_groups)
        raise ValueError(f"groups must occur in both sets; only in one: {sorted(missing, key=str)}")
    per_group = {}
    for g in sorted(set(real_groups), key=str):
        rows_r = [i for i, label in enumerate(real_groups) if label == g]
        rows_f = [i for i, label in enumerate(fake_groups) if label == g]
        if min(len(rows_r), len(rows_f)) < 2:
            raise ValueError(f"group {g!r} has fewer than 2 videos in one of the sets")
        mu_r, sigma_r = feature_statistics(real_feats[rows_r], unbiased)
        mu_f, sigma_f = feature_statistics(fake_feats[rows_f], unbiased)
        per_group[g] = frechet_distance(mu_r, sigma_r, mu_f, sigma_f, eps=eps)
    values = np.array(list(per_group.values()), dtype=np.float64)
    return float(values.mean()), float(values.std()), per_group


def _labels(groups) -> list:
    """Group labels as a list of Python values (tensors and arrays become ints / strings)."""
    if isinstance(groups, torch.Tensor):
        groups = groups.cpu().numpy()
    return groups.tolist() if isinstance(groups, np.ndarray) else list(groups)


class _VideoFeatureMetric(Metric):
    """Shared part of FVD and KVD: preprocessing, I3D features, stored states, dedup by dataset index."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, feature_extractor: nn.Module | str | os.PathLike | None = None, resize: str = "direct",
                 image_size: int = 224, **kwargs):
        super().__init__(**kwargs)
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        if not isinstance(feature_extractor, nn.Module):
            feature_extractor = load_i3d(feature_extractor)
        self.feature_extractor = feature_extractor.eval().requires_grad_(False)
        self.resize, self.image_size = resize, image_size
        self.protocol: dict = {}
        for split in ("real", "fake"):
            self.add_state(f"{split}_features", default=[], dist_reduce_fx="cat")
            self.add_state(f"{split}_index", default=[], dist_reduce_fx="cat")
            self.add_state(f"{split}_group", default=[], dist_reduce_fx="cat")
            self.add_state(f"{split}_num_frames", default=torch.tensor(0), dist_reduce_fx="max")

    def train(self, mode: bool = True):
        """Switch the metric's mode but keep the feature extractor in eval (frozen BatchNorm statistics)."""
        super().train(mode)
        self.feature_extractor.eval()
        return self

    def update(self, videos: torch.Tensor, real: bool, index: torch.Tensor | None = None,
               group: torch.Tensor | None = None) -> None:
        """Add a batch of videos (B, C, T, H, W) in [-1, 1] to the real or generated set.

        Args:
            index: optional (B,) dataset indices (>= 0); videos with the same index are counted once in
                compute(), which drops DistributedSampler padding. Give it in every update or in none.
            group: optional (B,) integer labels (class / subject) for
            :meth:`FrechetVideoDistance.compute_grouped`.
        """
        split = "real" if real else "fake"
        _check_videos(videos)
        b, t = videos.shape[0], videos.shape[2]
        for name, extra in (("index", index), ("group", group)):
            if extra is not None and tuple(extra.shape) != (b,):
                raise ValueError(f"{name} must have shape ({b},), got {tuple(extra.shape)}")
        if index is not None and bool((index < 0).any()):
            raise ValueError("index must hold dataset indices >= 0")
        frames_state = int(getattr(self, f"{split}_num_frames"))
        if frames_state not in (0, t):
            raise ValueError(f"all {split} videos must have {frames_state} frames, got {t}")
        x = _resize_frames(videos.to(self.device), self.resize, self.image_size)  # (B, 3, T, S, S)
        with torch.no_grad():
            feats = self.feature_extractor(x)
        if feats.ndim != 2 or feats.shape[0] != b:
            raise ValueError(f"feature_extractor must return (B, D) features, got {tuple(feats.shape)}")
        getattr(self, f"{split}_features").append(feats.to(torch.float64))
        minus_one = torch.full((b,), -1, dtype=torch.long, device=self.device)
        getattr(self, f"{split}_index").append(minus_one if index is None else index.long().to(self.device))
        getattr(self, f"{split}_group").append(minus_one if group is None else group.long().to(self.device))
        setattr(self, f"{split}_num_frames", torch.tensor(t, device=self.device))

    def _gathered(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (N, D) float64, groups (N,)) of one split, padding duplicates removed.

        Rows with a dataset index are sorted by it, so the result is independent of the process count.
        """
        feats_state = getattr(self, f"{split}_features")
        if len(feats_state) == 0:
            raise ValueError(f"no {split} videos were given to update()")
        feats = dim_zero_cat(feats_state)
        index = dim_zero_cat(getattr(self, f"{split}_index"))
        groups = dim_zero_cat(getattr(self, f"{split}_group"))
        has_index = index >= 0
        if bool(has_index.any()) and not bool(has_index.all()):
            raise ValueError(f"index was given for some {split} updates but not for others")
        if bool(has_index.all()):
            _, first = np.unique(index.cpu().numpy(), return_index=True)  # sorted unique indices
            keep = torch.as_tensor(first, device=feats.device)
            feats, groups = feats[keep], groups[keep]
        return feats, groups

    def _base_protocol(self, num_real: int, num_fake: int) -> dict:
        return {
            "num_real": num_real,
            "num_fake": num_fake,
            "num_frames": int(self.fake_num_frames),
            "resize": self.resize,
            "image_size": self.image_size,
        }


class FrechetVideoDistance(_VideoFeatureMetric):
    """FVD: Frechet distance between Gaussians fitted to I3D features of real and generated videos.

    Args:
        feature_extractor: a module mapping (B, 3, T, S, S) in [-1, 1] to (B, D) features, or a path /
            None for :func:`videogen.core.metrics.load_i3d`.
        resize: "direct" (TATS/LVDM) or "center_crop" (VideoGPT/PVDM/CMD).
        image_size: frame side after preprocessing (224 for I3D).
        cov_normalization: "unbiased" (N-1; TATS, torchmetrics, default) or "biased" (N; StyleGAN-V).
        eps: first diagonal offset for singular covariances (see :func:`frechet_distance`).

    ``compute()`` returns a float64 scalar tensor and fills ``.protocol``.
    """

    def __init__(self, feature_extractor=None, resize: str = "direct", image_size: int = 224,
                 cov_normalization: str = "unbiased", eps: float = 1e-6, **kwargs):
        super().__init__(feature_extractor, resize, image_size, **kwargs)
        if cov_normalization not in COV_NORMALIZATIONS:
            raise ValueError(f"cov_normalization must be one of {COV_NORMALIZATIONS}, got "
                             f"{cov_normalization!r}")
        self.cov_normalization, self.eps = cov_normalization, eps
        self._real_stats: dict | None = None  # set by load_real_stats; survives reset()

    def update(self, videos: torch.Tensor, real: bool, index=None, group=None) -> None:
        if real and self._real_stats is not None:
            raise ValueError("real statistics were loaded from a file; update() only with generated videos")
        super().update(videos, real, index, group)

    def _real_statistics(self) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """(mu, sigma, num_real, num_frames) from loaded statistics or the stored real features."""
        if self._real_stats is not None:
            s = self._real_stats
            return s["mu"], s["sigma"], s["num_samples"], s["num_frames"]
        feats, _ = self._gathered("real")
        mu, sigma = feature_statistics(feats, unbiased=self.cov_normalization == "unbiased")
        return mu, sigma, feats.shape[0], int(self.real_num_frames)

    def compute(self) -> torch.Tensor:
        mu_r, sigma_r, num_real, real_frames = self._real_statistics()
        fake, _ = self._gathered("fake")
        if real_frames != int(self.fake_num_frames):
            raise ValueError(f"real videos have {real_frames} frames, generated {int(self.fake_num_frames)}")
        mu_f, sigma_f = feature_statistics(fake, unbiased=self.cov_normalization == "unbiased")
        value = frechet_distance(mu_r, sigma_r, mu_f, sigma_f, eps=self.eps)
        self.protocol = self._base_protocol(num_real,
                                            fake.shape[0]) | {"cov_normalization": self.cov_normalization}
        return torch.tensor(value, dtype=torch.float64)

    def compute_grouped(self) -> tuple[float, float, dict]:
        """cFVD / sFVD from the stored features and the ``group`` labels given to update().

        Returns ``(mean, std, per_group)`` as :func:`grouped_fvd`; all ranks' features are used.
        """
        with self.sync_context():
            real, real_groups = self._gathered("real")
            fake, fake_groups = self._gathered("fake")
        if bool((real_groups < 0).any()) or bool((fake_groups < 0).any()):
            raise ValueError("compute_grouped needs a group label for every video given to update()")
        unbiased = self.cov_normalization == "unbiased"
        result = grouped_fvd(real, fake, real_groups, fake_groups, unbiased=unbiased, eps=self.eps)
        self.protocol = self._base_protocol(real.shape[0], fake.shape[0]) | {
            "cov_normalization": self.cov_normalization,
            "num_groups": len(result[2]),
        }
        return result

    def save_real_stats(self, path: str | os.PathLike) -> None:
        """Write the real-set mean, covariance and protocol to ``.safetensors`` or ``.npz`` (no pickle).

        Under DDP all ranks' features are gathered; call it on every rank, write on one.
        """
        with self.sync_context():
            mu, sigma, n, num_frames = self._real_statistics()
        meta = {"num_samples": str(n), "num_frames": str(num_frames), "resize": self.resize,
                "image_size": str(self.image_size), "cov_normalization": self.cov_normalization}
        path = Path(path)
        if path.suffix == ".safetensors":
            save_file({"mu": mu.contiguous(), "sigma": sigma.contiguous()}, str(path), metadata=meta)
        elif path.suffix == ".npz":
            np.savez(path, mu=mu.numpy(), sigma=sigma.numpy(), **{k: np.array(v) for k, v in meta.items()})
        else:
            raise ValueError(f"real statistics are saved as .safetensors or .npz, got {path.name!r}")

    def load_real_stats(self, path: str | os.PathLike) -> None:
        """Use real-set statistics saved by :meth:`save_real_stats` instead of real videos.

        The covariance is converted if it was saved with the other normalisation; a different resize
        mode or image size raises ValueError (the numbers would not be comparable).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"real statistics file not found: {path}")
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                meta, mu, sigma = f.metadata(), f.get_tensor("mu"), f.get_tensor("sigma")
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                mu, sigma = torch.from_numpy(data["mu"]), torch.from_numpy(data["sigma"])
                meta = {k: str(data[k]) for k in data.files if k not in ("mu", "sigma")}
        else:
            raise ValueError(f"real statistics must be .safetensors or .npz, got {path.name!r}")
        if (meta["resize"], int(meta["image_size"])) != (self.resize, self.image_size):
            raise ValueError(
                f"{path} was computed with resize={meta['resize']!r}, image_size={meta['image_size']}; this "
                f"metric uses resize={self.resize!r}, image_size={self.image_size}"
            )
        n = int(meta["num_samples"])
        if meta["cov_normalization"] != self.cov_normalization:  # rescale between N-1 and N
            sigma = sigma * ((n - 1) / n if self.cov_normalization == "biased" else n / (n - 1))
        self._real_stats = {"mu": mu.double(), "sigma": sigma.double(), "num_samples": n,
                            "num_frames": int(meta["num_frames"])}


class KernelVideoDistance(_VideoFeatureMetric):
    """KVD: unbiased MMD^2 with the polynomial kernel (x.y/d + 1)^3 on the same features as FVD.

    Args:
        subsets: None for one estimate on all videos (TATS), or ``(n_subsets, subset_size)`` for the
            KID-style average over random subsets (e.g. ``(100, 1000)``), drawn with ``seed``.
        Other arguments as :class:`FrechetVideoDistance`.

    ``compute()`` returns the (mean) MMD^2 as a float64 tensor; with subsets ``.protocol["std"]`` holds
    the standard deviation over subsets (ddof=1, as torchmetrics' KID).
    """

    def __init__(self, feature_extractor=None, resize: str = "direct", image_size: int = 224,
                 subsets: tuple[int, int] | None = None, seed: int = 0, **kwargs):
        super().__init__(feature_extractor, resize, image_size, **kwargs)
        if subsets is not None and (len(subsets) != 2 or min(subsets) < 2):
            raise ValueError(f"subsets must be None or (n_subsets >= 2, subset_size >= 2), got {subsets}")
        self.subsets, self.seed = subsets, seed

    def compute(self) -> torch.Tensor:
        real, _ = self._gathered("real")
        fake, _ = self._gathered("fake")
        self.protocol = self._base_protocol(real.shape[0], fake.shape[0]) | {"subsets": self.subsets}
        if self.subsets is None:
            return torch.tensor(polynomial_mmd(real, fake), dtype=torch.float64)
        n_subsets, size = self.subsets
        if size > min(real.shape[0], fake.shape[0]):
            raise ValueError(f"subset_size {size} exceeds the number of videos ({real.shape[0]}, "
                             f"{fake.shape[0]})")
        rng = np.random.default_rng(self.seed)
        values = []
        for _ in range(n_subsets):
            rows_r = torch.as_tensor(rng.choice(real.shape[0], size, replace=False), device=real.device)
            rows_f = torch.as_tensor(rng.choice(fake.shape[0], size, replace=False), device=fake.device)
            values.append(polynomial_mmd(real[rows_r], fake[rows_f]))
        self.protocol["std"] = float(np.std(values, ddof=1))
        return torch.tensor(float(np.mean(values)), dtype=torch.float64)
