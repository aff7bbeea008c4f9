"""videogen.lamd: LaMD (latent motion diffusion, Hu et al. IJCV 2025); imports only core and data.

Names load on first access, so ``import videogen.lamd`` stays cheap.

Stage 1 (MCD-VAE): ``MCDVAE``, ``LatentNorm``, ``MCDVAEModule``, ``load_mcdvae``.
Stage 2 (DMG): ``MotionGenerator``, ``DMGModule``; text encoders ``TextEncoder``, ``HFTextEncoder``,
``OpenCLIPTextEncoder``, ``load_text_encoder``. Inference: ``LaMD`` (generate / transfer_motion).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    # stage 1
    "MCDVAE": "mcdvae",
    "LatentNorm": "mcdvae",
    "MCDVAEModule": "mcdvae_module",
    "load_mcdvae": "mcdvae_module",
    # stage 2
    "MotionGenerator": "dmg",
    "DMGModule": "dmg_module",
    "LaMD": "pipeline",
    "TextEncoder": "text",
    "HFTextEncoder": "text",
    "OpenCLIPTextEncoder": "text",
    "load_text_encoder": "text",
    "build_text_encoder": "text",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"videogen.lamd.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'videogen.lamd' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = list(_EXPORTS)
