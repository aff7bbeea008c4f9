"""videogen.lvdm: LVDM, latent video diffusion for long videos (He et al. 2022); imports only core and data.

Names load on first access.  Layout (as every model package): networks (``autoencoder``, ``unet3d``,
``sd_unet``), one LightningModule per stage (``*_module``), the pipelines (``pipeline``,
``text2video_pipeline``).  Built so far: the 3D autoencoder (``VideoAutoencoder3D``,
``VideoAutoencoder3DModule``), the 3D UNet with factorised attention (``UNet3D``) and the unconditional
short-video model (``LVDMShortModule``), prediction / interpolation (``ConditionalUNet3D``,
``LVDMLongModule``), long-video inference (``LVDM.generate_long``) and text-to-video on a Stable
Diffusion UNet (``VideoUNetFromSD``, ``LVDMTextToVideoModule``).  Details: docs/lvdm.md.
"""

from __future__ import annotations

from videogen.core.lazy import lazy_exports

_EXPORTS = {
    "VideoAutoencoder3D": "autoencoder",
    "VideoAutoencoder3DModule": "autoencoder_module",
    "UNet3D": "unet3d",
    "LVDMShortModule": "short_module",
    "load_video_autoencoder": "short_module",
    "cache_latents": "short_module",
    "ConditionalUNet3D": "unet3d",
    "LVDMLongModule": "long_module",
    "LVDM": "pipeline",
    "hierarchical_plan": "pipeline",
    "autoregressive_clips": "pipeline",
    "VideoUNetFromSD": "sd_unet",
    "LVDMTextToVideoModule": "text2video_module",
    "LVDMTextToVideo": "text2video_pipeline",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = list(_EXPORTS)
