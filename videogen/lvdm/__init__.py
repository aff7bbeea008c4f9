"""videogen.lvdm: LVDM, latent video diffusion for long videos (He et al. 2022); imports only core and data.

Names load on first access.  Layout (as every model package): networks (``autoencoder``, ``unet3d``,
``sd_unet``), one LightningModule per stage (``*_module``), the pipelines (``pipeline``,
``text2video_pipeline``).  Built so far: the 3D autoencoder (``VideoAutoencoder3D``,
``VideoAutoencoder3DModule``), the 3D UNet with factorised attention (``UNet3D``) and the unconditional
short-video model (``LVDMShortModule``), prediction / interpolation (``ConditionalUNet3D``,
``LVDMLongModule``), long-video inference (``LVDM.generate_long``) and text-to-video on a Stable
Diffusion UNet (``VideoUNetFromSD``, ``LVDMTextToVideoModule``), and the conversion of the official
checkpoints (``convert_lvdm``, ``convert``).  Details: docs/lvdm.md.
"""

from __future__ import annotations

from videogen.core.lazy import lazy_exports

_EXPORTS = {  # module -> the names it exports (space-separated)
    "autoencoder": "VideoAutoencoder3D",
    "autoencoder_module": "VideoAutoencoder3DModule",
    "unet3d": "UNet3D ConditionalUNet3D",
    "short_module": "LVDMShortModule load_video_autoencoder cache_latents",
    "long_module": "LVDMLongModule",
    "pipeline": "LVDM hierarchical_plan autoregressive_clips",
    "sd_unet": "VideoUNetFromSD",
    "text2video_module": "LVDMTextToVideoModule",
    "text2video_pipeline": "LVDMTextToVideo",
    "convert": "convert_lvdm read_official_config official_key_map map_official_state_dict PRESETS",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, globals())
