"""Losses: KL vs torch.distributions, GAN losses on known logits, VQGAN adaptive weight, LPIPS loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from videogen.core.losses import (
    DiagonalGaussian,
    LPIPSLoss,
    ReconstructionLoss,
    adaptive_weight,
    generator_adv_loss,
    hinge_d_loss,
    kl_diagonal_gaussian,
    vanilla_d_loss,
)


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(3, 4, 2, 5, generator=g)
    logvar = torch.randn(3, 4, 2, 5, generator=g)
    ref = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).flatten(1).sum(1)
    kl = kl_diagonal_gaussian(mean, logvar)
    assert kl.shape == (3,)
    torch.testing.assert_close(kl, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(DiagonalGaussian(mean, logvar).kl(), ref, rtol=1e-5, atol=1e-5)
    assert kl_diagonal_gaussian(torch.zeros(2, 3), torch.zeros(2, 3)).abs().max() == 0


def test_diagonal_gaussian_sample_is_seeded_and_reparameterised():
    moments = torch.randn(2, 8, 3, 3, requires_grad=True)
    post = DiagonalGaussian.from_moments(moments)
    assert post.mean.shape == (2, 4, 3, 3)
    a = post.sample(torch.Generator().manual_seed(1))
    b = post.sample(torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert torch.equal(post.mode(), post.mean)
    a.sum().backward()
    assert moments.grad is not None and moments.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same shape"):
        kl_diagonal_gaussian(torch.zeros(2, 3), torch.zeros(2, 4))


def test_gan_losses_on_known_logits():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.0])
    # hinge: relu(1 - real) = [0, .5, 2] -> mean 5/6; relu(1 + fake) = [0, 1, 2] -> mean 1
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (5 / 6 + 1.0))
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    expected = 0.5 * (sum(sp(-r) for r in real.tolist()) / 3 + sum(sp(f) for f in fake.tolist()) / 3)
    assert vanilla_d_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)
    assert generator_adv_loss(fake, "hinge").item() == pytest.approx(1 / 3)
    assert generator_adv_loss(fake, "vanilla").item() == pytest.approx(
        sum(sp(-f) for f in fake.tolist()) / 3, rel=1e-6
    )
    with pytest.raises(ValueError, match="hinge"):
        generator_adv_loss(fake, "wgan")


def test_adaptive_weight_is_grad_norm_ratio():
    torch.manual_seed(0)
    last = torch.nn.Parameter(torch.randn(4, 3))
    x = torch.randn(5, 3)
    out = x @ last.t()
    rec = out.abs().mean()
    g = -(out * 3.0).mean()
    w = adaptive_weight(rec, g, last)
    gr = torch.autograd.grad(rec, last, retain_graph=True)[0].norm()
    gg = torch.autograd.grad(g, last, retain_graph=True)[0].norm()
    assert w.item() == pytest.approx((gr / (gg + 1e-4)).item(), rel=1e-6)
    assert not w.requires_grad
    assert adaptive_weight(rec * 1e9, g * 1e-9, last, max_weight=10.0).item() == 10.0
    (rec + w * g).backward()  # the graph survives for the real backward pass


@pytest.fixture(scope="module")
def lpips_loss():
    torch.manual_seed(0)
    return LPIPSLoss(net="alex", pnet_rand=True, frame_chunk=3)


def test_lpips_loss_gradients_reach_input_and_are_chunk_independent(lpips_loss):
    torch.manual_seed(1)
    x = (torch.rand(2, 3, 4, 32, 32) * 2 - 1).requires_grad_(True)
    y = torch.rand(2, 3, 4, 32, 32) * 2 - 1
    loss = lpips_loss(x, y)
    loss.backward()
    assert loss.ndim == 0 and loss.item() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0
    grad_chunked = x.grad.clone()
    x.grad = None
    lpips_loss.frame_chunk = None  # one pass over all frames: same value and gradient
    loss_full = lpips_loss(x, y)
    loss_full.backward()
    lpips_loss.frame_chunk = 3
    torch.testing.assert_close(loss_full, loss)
    torch.testing.assert_close(x.grad, grad_chunked, rtol=1e-4, atol=1e-7)
    assert lpips_loss(y, y).item() == pytest.approx(0.0, abs=1e-6)


def test_lpips_loss_is_frozen_and_out_of_state_dict(lpips_loss):
    lpips_loss.train()
    assert not lpips_loss._lpips[0].training
    assert list(lpips_loss.parameters()) == [] and lpips_loss.state_dict() == {}
    assert all(not p.requires_grad for p in lpips_loss._lpips[0].parameters())
    lpips_loss.double()
    assert next(lpips_loss._lpips[0].parameters()).dtype == torch.float64
    lpips_loss.float()
    img = torch.rand(2, 3, 32, 32) * 2 - 1  # images (B, C, H, W) are accepted too
    assert lpips_loss(img, img.flip(0)).item() > 0
    with pytest.raises(ValueError, match="shape"):
        lpips_loss(img, img[:1])
    with pytest.raises(ValueError, match="pnet_rand"):
        LPIPSLoss(pretrained=False)


def test_reconstruction_loss_combines_terms(lpips_loss):
    torch.manual_seed(2)
    x, y = torch.rand(2, 3, 2, 32, 32) * 2 - 1, torch.rand(2, 3, 2, 32, 32) * 2 - 1
    loss_fn = ReconstructionLoss(l1_weight=4.0, l2_weight=0.5, lpips_weight=2.0, lpips=lpips_loss)
    total, terms = loss_fn(x, y)
    assert set(terms) == {"l1", "l2", "lpips"}
    torch.testing.assert_close(terms["l1"], F.l1_loss(x, y))
    torch.testing.assert_close(terms["l2"], F.mse_loss(x, y))
    torch.testing.assert_close(total, 4 * terms["l1"] + 0.5 * terms["l2"] + 2 * lpips_loss(x, y))
    total, terms = ReconstructionLoss(lpips_weight=0.0)(x, y)
    assert set(terms) == {"l1"}
