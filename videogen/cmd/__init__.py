"""videogen.cmd: CMD, content-motion latent diffusion (Yu et al., ICLR 2024); imports only core and data.

Names load on first access, so ``import videogen.cmd`` stays cheap.

Stage 1: ``CMDAutoencoder`` (content frame + motion latent), ``CMDAutoencoderModule``.
Stage 2a: ``ContentDiT`` (from scratch) or ``videogen.core.sd.SDUNet`` (Stable Diffusion fine-tune),
``CMDContentModule``.  Stage 2b: ``MotionDiT``, ``CMDMotionModule``.  Inference: ``CMD``
(generate / animate / reconstruct).  Official checkpoints: ``convert_cmd``.  Details: docs/cmd.md.
"""

from __future__ import annotations

from videogen.core.lazy import lazy_exports

_EXPORTS = {  # module -> the names it exports (space-separated)
    "autoencoder": "CMDAutoencoder",
    "dit": "ContentDiT MotionDiT",
    "stage": "load_cmd_autoencoder",
    "autoencoder_module": "CMDAutoencoderModule cache_latents motion_latent_std",
    "content_module": "CMDContentModule",
    "motion_module": "CMDMotionModule",
    "pipeline": "CMD",
    "convert": "convert_cmd",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, globals())
