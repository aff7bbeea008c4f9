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
_LAZY = {  # module -> the names it exports (space-separated)
    "fid": "FrechetInceptionDistance",
    "lpips": "VideoLPIPS build_lpips lpips_per_video",
    "clipsim": "CLIPSimilarity clip_similarity_per_video load_open_clip",
    "psnr_ssim": "VideoPSNR VideoSSIM psnr_per_video ssim_per_video",
}


__getattr__, __dir__, _lazy_names = lazy_exports(__name__, _LAZY, globals())
__all__ += _lazy_names
