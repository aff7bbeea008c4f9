"""Frechet distance against an independent float64 scipy reference, and its edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from videogen.core.metrics.frechet import feature_statistics, frechet_distance


def _reference_frechet(mu1, s1, mu2, s2) -> float:
    """Textbook formula in float64 through sqrt(S1) S2 sqrt(S1), a different route from the library."""
    root1 = scipy.linalg.sqrtm(s1).real
    middle = scipy.linalg.sqrtm(root1 @ s2 @ root1).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(middle))


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, 2 * d))
    return a @ a.T / (2 * d) + 0.1 * np.eye(d)


@pytest.mark.parametrize("d", [16, 33, 64])
def test_matches_scipy_reference(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    expected = _reference_frechet(mu1, s1, mu2, s2)
    got = frechet_distance(mu1, s1, mu2, s2)
    assert isinstance(got, float)
    assert abs(got - expected) <= 1e-6 * abs(expected)
    # torch inputs (float32 is upcast to float64 before any arithmetic)
    got_t = frechet_distance(*(torch.from_numpy(a) for a in (mu1, s1, mu2, s2)))
    assert abs(got_t - expected) <= 1e-6 * abs(expected)


def test_identical_sets_give_zero():
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((500, 32)) @ rng.standard_normal((32, 32))
    mu, sigma = feature_statistics(feats)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a well-conditioned case must not warn
        value = frechet_distance(mu, sigma, mu, sigma)
    assert abs(value) < 1e-6 * float(torch.trace(sigma))


def test_identity_covariances_give_squared_mean_distance():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(20), rng.standard_normal(20)
    eye = np.eye(20)
    assert frechet_distance(mu1, eye, mu2, eye) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-12,
                                                                 abs=1e-12)


def test_singular_covariance_warns_and_is_finite():
    rng = np.random.default_rng(2)
    real, fake = rng.standard_normal((10, 32)), rng.standard_normal((12, 32)) + 0.5  # N < d: rank deficient
    mu1, s1 = feature_statistics(real)
    mu2, s2 = feature_statistics(fake)
    with pytest.warns(RuntimeWarning, match="singular"):
        value = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(value) and value > 0
    # the offset is tiny next to the covariance scale: close to the offset-free reference formula
    eye = 1e-6 * np.eye(32)
    assert value == pytest.approx(_reference_frechet(mu1.numpy(), s1.numpy() + eye, mu2.numpy(),
                                                     s2.numpy() + eye),
                                  rel=1e-4)


def test_feature_statistics_normalisation():
    x = torch.randn(50, 6, dtype=torch.float32)
    mu, sigma = feature_statistics(x)
    assert mu.dtype == sigma.dtype == torch.float64
    np.testing.assert_allclose(sigma.numpy(), np.cov(x.double().numpy(), rowvar=False), rtol=1e-12)
    _, biased = feature_statistics(x, unbiased=False)
    np.testing.assert_allclose(biased.numpy(), np.cov(x.double().numpy(), rowvar=False, bias=True),
                               rtol=1e-12)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="shape"):
        feature_statistics(torch.randn(5))
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.zeros(2), np.eye(2) * np.nan, np.zeros(2), np.eye(2))
