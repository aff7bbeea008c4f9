"""videogen.lvdm: LVDM, latent video diffusion for long videos (He et al. 2022); imports only core and data.

Names load on first access.  Built so far: the 3D autoencoder (``VideoAutoencoder3D``) and its training
module (``VideoAutoencoder3DModule``).  The 3D UNet, long-video prediction/interpolation and
text-to-video are not built yet (docs/lvdm.md).
"""

from __future__ import annotations

from videogen.core.lazy import lazy_exports

_EXPORTS = {
    "VideoAutoencoder3D": "autoencoder",
    "VideoAutoencoder3DModule": "autoencoder_module",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = list(_EXPORTS)
