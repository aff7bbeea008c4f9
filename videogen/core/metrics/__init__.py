"""videogen.core.metrics."""

from videogen.core.lazy import lazy_exports

from .frechet import feature_statistics, frechet_distance
from .fvd import (
    FrechetVideoDistance,
    KernelVideoDistance,
    grouped_fvd,
    polynomial_mmd,
    preprocess_videos,
)
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

# Frame-level metrics, imported on first use (lpips, open_clip and torch-fidelity are slow to import).
_LAZY = {
    "FrechetInceptionDistance": "fid",
    "VideoLPIPS": "lpips",
    "build_lpips": "lpips",
    "lpips_per_video": "lpips",
    "CLIPSimilarity": "clipsim",
    "clip_similarity_per_video": "clipsim",
    "load_open_clip": "clipsim",
    "VideoPSNR": "psnr_ssim",
    "VideoSSIM": "psnr_ssim",
    "psnr_per_video": "psnr_ssim",
    "ssim_per_video": "psnr_ssim",
}
__all__ += list(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
