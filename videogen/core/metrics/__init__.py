"""videogen.core.metrics."""

from .frechet import feature_statistics, frechet_distance
from .fvd import FrechetVideoDistance, KernelVideoDistance, grouped_fvd, polynomial_mmd, preprocess_videos
from .i3d import I3D, TorchScriptI3D, load_i3d

__all__ = [
    "I3D",
    "FrechetVideoDistance",
    "KernelVideoDistance",
    "TorchScriptI3D",
    "feature_statistics",
    "frechet_distance",
    "grouped_fvd",
    "load_i3d",
    "polynomial_mmd",
    "preprocess_videos",
]
