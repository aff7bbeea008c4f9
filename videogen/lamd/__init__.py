"""videogen.lamd: LaMD (latent motion diffusion, Hu et al. IJCV 2025); imports only core and data.

Names load on first access, so ``import videogen.lamd`` stays cheap.

Stage 1 (MCD-VAE): ``MCDVAE``, ``LatentNorm``, ``MCDVAEModule``, ``load_mcdvae``.
Stage 2 (DMG): ``MotionGenerator``, ``DMGModule``; text encoders ``TextEncoder``, ``HFTextEncoder``,
``OpenCLIPTextEncoder``, ``load_text_encoder`` (from ``videogen.core.text``). Inference: ``LaMD`` (generate /
transfer_motion).
"""

from __future__ import annotations

from videogen.core.lazy import lazy_exports

_EXPORTS = {  # module -> the names it exports (space-separated)
    "mcdvae": "MCDVAE LatentNorm",
    "mcdvae_module": "MCDVAEModule load_mcdvae",
    "dmg": "MotionGenerator",
    "dmg_module": "DMGModule cache_latents",
    "pipeline": "LaMD",
    "videogen.core.text": "TextEncoder HFTextEncoder OpenCLIPTextEncoder load_text_encoder "
                          "build_text_encoder",
}


__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, globals())
