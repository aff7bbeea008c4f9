"""videogen.core.metrics."""

from .frechet import feature_statistics, frechet_distance
from .fvd import FrechetVideoDistance, KernelVideoDistance, grouped_fvd, polynomial_mmd, preprocess_videos
from .i3d import I3D, TorchScriptI3D, load_i3d
from .motion import MotionAccuracy, motion_accuracy, predict_direction, track_object

__all__ = [
    "I3D",
    "FrechetVideoDistance",
    "KernelVideoDistance",
    "MotionAccuracy",
    "TorchScriptI3D",
    "feature_statistics",
    "frechet_distance",
    "grouped_fvd",
    "load_i3d",
    "motion_accuracy",
    "polynomial_mmd",
    "predict_direction",
    "preprocess_videos",
    "track_object",
]
