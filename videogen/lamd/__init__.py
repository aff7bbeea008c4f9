"""videogen.lamd: LaMD (latent motion diffusion, Hu et al. IJCV 2025); imports only core and data.

Names load on first access, so ``import videogen.lamd`` stays cheap.

Stage 1 (MCD-VAE): ``MCDVAE``, ``LatentNorm``, ``MCDVAEModule``, ``load_mcdvae``.
Stage 2 (DMG): ``MotionGenerator``, ``DMGModule``; text encoders ``TextEncoder``, ``HFTextEncoder``,
``OpenCLIPTextEncoder``, ``load_text_encoder`` (from ``videogen.core.text``). Inference: ``LaMD`` (generate /
transfer_motion).
"""

from __future__ import annotations

from videogen.core.lazy import lazy_exports

_EXPORTS = {
    # stage 1
    "MCDVAE": "mcdvae",
    "LatentNorm": "mcdvae",
    "MCDVAEModule": "mcdvae_module",
    "load_mcdvae": "mcdvae_module",
    # stage 2
    "MotionGenerator": "dmg",
    "DMGModule": "dmg_module",
    "cache_latents": "dmg_module",
    "LaMD": "pipeline",
    # text encoders live in videogen.core.text (CMD and LVDM use them too); re-exported for LaMD users
    "TextEncoder": "videogen.core.text",
    "HFTextEncoder": "videogen.core.text",
    "OpenCLIPTextEncoder": "videogen.core.text",
    "load_text_encoder": "videogen.core.text",
    "build_text_encoder": "videogen.core.text",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = list(_EXPORTS)
