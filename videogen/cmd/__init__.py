"""videogen.cmd: CMD, content-motion latent diffusion (Yu et al., ICLR 2024); imports only core and data.

Names load on first access, so ``import videogen.cmd`` stays cheap.

Stage 1: ``CMDAutoencoder`` (content frame + motion latent), ``CMDAutoencoderModule``.
Stage 2a: ``ContentDiT`` (from scratch) or ``videogen.core.sd.SDUNet`` (Stable Diffusion fine-tune),
``CMDContentModule``.  Stage 2b: ``MotionDiT``, ``CMDMotionModule``.  Inference: ``CMD``
(generate / animate / reconstruct).  Details: docs/cmd.md.
"""

from __future__ import annotations

from videogen.core.lazy import lazy_exports

_EXPORTS = {
    "CMDAutoencoder": "autoencoder",
    "ContentDiT": "dit",
    "MotionDiT": "dit",
    "CMDAutoencoderModule": "modules",
    "CMDContentModule": "modules",
    "CMDMotionModule": "modules",
    "load_cmd_autoencoder": "modules",
    "cache_latents": "modules",
    "CMD": "pipeline",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = list(_EXPORTS)
