"""Frechet distance between two Gaussians fitted to feature sets (FID, FVD), in float64.

    d^2 = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^{1/2})

The matrix square root of the (non-symmetric) product S1 S2 is taken with ``scipy.linalg.sqrtm``, as
pytorch-fid and StyleGAN-V do; its eigenvalues are never computed with ``eigvalsh`` (which assumes a
symmetric matrix and gives wrong numbers for the product). With fewer samples than feature dimensions the
covariances are singular and the square root may not exist numerically: we then add ``eps * I`` to both
covariances (growing eps tenfold until the result is finite) and warn, so the reported number is flagged.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch

__all__ = ["feature_statistics", "frechet_distance"]

# sqrt(S1 S2)^2 must reproduce S1 S2 to this relative accuracy, else the offset retry is used.
_SQRTM_RESIDUAL_TOL = 1e-5
# A covariance whose smallest eigenvalue is below this fraction of its largest is treated as singular.
_SINGULAR_TOL = 1e-12
# An imaginary part larger than this (relative to the largest |sqrtm| entry) means a broken sqrtm.
_IMAG_TOL = 1e-3
_MAX_RETRIES = 6


def _as_float64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def feature_statistics(features, unbiased: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of ``features`` (N, D), computed in float64.

    Args:
        features: tensor or array of shape (N, D).
        unbiased: divide the covariance by N-1 (TATS, torchmetrics, pytorch-fid) if True, by N
            (StyleGAN-V's ``FeatureStats``) if False.

    Returns:
        ``(mu, sigma)`` as float64 tensors of shapes (D,) and (D, D).
    """
    x = torch.as_tensor(_as_float64(features))
    if x.ndim != 2:
        raise ValueError(f"features must have shape (N, D), got {tuple(x.shape)}")
    n = x.shape[0]
    if n < (2 if unbiased else 1):
        raise ValueError(f"need at least {2 if unbiased else 1} feature vectors for a covariance, got {n}")
    mu = x.mean(dim=0)
    xc = x - mu  # (N, D)
    sigma = xc.T @ xc / (n - 1 if unbiased else n)  # (D, D)
    return mu, sigma


def _is_singular(sigma: np.ndarray) -> bool:
    """True when the symmetric PSD matrix ``sigma`` is rank deficient (e.g. N <= D samples)."""
    eig = np.linalg.eigvalsh(sigma)  # sigma itself is symmetric; the product S1 S2 never goes here
    return bool(eig[0] <= _SINGULAR_TOL * max(eig[-1], np.finfo(np.float64).tiny))


def _sqrtm_product(sigma1: np.ndarray, sigma2: np.ndarray) -> tuple[np.ndarray, bool]:
    """(S1 S2)^{1/2} and whether it is trustworthy (finite and squares back to S1 S2)."""
    product = sigma1 @ sigma2
    with warnings.catch_warnings():
        # scipy warns on singular input; we judge the result ourselves below.
        warnings.simplefilter("ignore")
        root = scipy.linalg.sqrtm(product)
    if not np.all(np.isfinite(root)):
        return root, False
    scale = max(np.abs(product).max(), np.finfo(np.float64).tiny)
    residual = np.abs(root @ root - product).max() / scale
    return root, bool(residual <= _SQRTM_RESIDUAL_TOL)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), computed in float64.

    Args:
        mu1, mu2: means (D,), tensors or arrays.
        sigma1, sigma2: covariances (D, D).
        eps: first diagonal offset tried when the square root of sigma1 @ sigma2 is not usable
            (singular covariances, e.g. fewer samples than dimensions). A warning reports the offset.

    Returns:
        The squared Frechet distance as a Python float (the quantity FID/FVD report).
    """
    mu1, mu2 = _as_float64(mu1), _as_float64(mu2)
    sigma1, sigma2 = _as_float64(sigma1), _as_float64(sigma2)
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"means must be 1-D of equal length, got {mu1.shape} and {mu2.shape}")
    d = mu1.shape[0]
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"covariances must be ({d}, {d}), got {sigma1.shape} and {sigma2.shape}")
    for name, arr in (("mu1", mu1), ("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or Inf")

    root, ok = _sqrtm_product(sigma1, sigma2)
    ok = ok and not (_is_singular(sigma1) or _is_singular(sigma2))
    offset = eps
    for _ in range(_MAX_RETRIES):
        if ok:
            break
        warnings.warn(
            f"frechet_distance: sqrtm(sigma1 @ sigma2) is singular or not finite (fewer samples than "
            f"feature dimensions?); adding {offset:g} * I to both covariances.",
            RuntimeWarning,
            stacklevel=2,
        )
        eye = np.eye(d) * offset
        root, ok = _sqrtm_product(sigma1 + eye, sigma2 + eye)
        offset *= 10.0
    if not np.all(np.isfinite(root)):
        raise ValueError("frechet_distance: sqrtm(sigma1 @ sigma2) stays non-finite after eps offsets")

    if np.iscomplexobj(root):
        imag = np.abs(root.imag).max()
        if imag > _IMAG_TOL * max(np.abs(root).max(), 1.0):
            warnings.warn(
                f"frechet_distance: sqrtm has a large imaginary component ({imag:.3g}); using its real part.",
                RuntimeWarning,
                stacklevel=2,
            )
        root = root.real

    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(root))
