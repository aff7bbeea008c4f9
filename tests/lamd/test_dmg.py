"""MotionGenerator (DMG): shapes, conditioning paths, gradients, input checks, and that it learns."""

from __future__ import annotations

import pytest
import torch

from tests.lamd._dmg_tiny import LATENT, randomize, tiny_dmg
from videogen.core.diffusion import GaussianDiffusion

B = 2


def _inputs(seed: int = 0, text_dim: int | None = None, length: int = 5):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(B, 3, LATENT, LATENT, generator=gen)
    content = torch.randn(B, 32, LATENT, LATENT, generator=gen)
    t = torch.tensor([10, 900])
    text = torch.randn(B, length, text_dim, generator=gen) if text_dim else None
    return z, t, content, text


def test_shapes_content_label_text():
    z, t, content, text = _inputs(text_dim=12)
    assert tiny_dmg()(z, t, content).shape == z.shape
    assert tiny_dmg(num_classes=3)(z, t, content, label=torch.tensor([0, 3])).shape == z.shape
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert tiny_dmg(text_dim=12)(z, t, content, text=text, text_mask=mask).shape == z.shape


def test_every_condition_changes_the_output():
    z, t, content, text = _inputs(text_dim=12)
    model = randomize(tiny_dmg(num_classes=3)).eval()
    out = model(z, t, content, label=torch.tensor([0, 1]))
    assert not torch.allclose(out, model(z, t, content, label=torch.tensor([2, 2])))
    assert not torch.allclose(out, model(z, t, content.flip(0), label=torch.tensor([0, 1])))
    # Content position matters: the same features at other places give another prediction.
    assert not torch.allclose(out, model(z, t, content.flip(-1), label=torch.tensor([0, 1])))
    text_model = randomize(tiny_dmg(text_dim=12)).eval()
    assert not torch.allclose(text_model(z, t, content, text=text),
                              text_model(z, t, content, text=text.flip(0)))


def test_masked_text_equals_no_text():
    """The CFG null text (every token masked out) is exactly the content-only condition."""
    z, t, content, text = _inputs(text_dim=12)
    model = randomize(tiny_dmg(text_dim=12)).eval()
    none = torch.zeros(B, text.shape[1], dtype=torch.bool)
    torch.testing.assert_close(model(z, t, content, text=text, text_mask=none), model(z, t, content))
    # Padding is ignored: changing masked-out tokens changes nothing.
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    other = text.clone()
    other[0, 2:] = 7.0
    torch.testing.assert_close(model(z, t, content, text=text, text_mask=mask),
                               model(z, t, content, text=other, text_mask=mask))


@pytest.mark.parametrize("kw", [{"num_classes": 3}, {"text_dim": 12}])
def test_gradients_reach_every_parameter(kw):
    z, t, content, text = _inputs(text_dim=kw.get("text_dim"))
    model = randomize(tiny_dmg(**kw)).train()
    cond = {"label": torch.tensor([1, 3])} if "num_classes" in kw else {"text": text}
    model(z, t, content, **cond).square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


def test_input_errors():
    z, t, content, text = _inputs(text_dim=12)
    plain, labelled = tiny_dmg(), tiny_dmg(num_classes=3)
    with pytest.raises(ValueError, match="z_t must be"):
        plain(z[:, :2], t, content)
    with pytest.raises(ValueError, match="content f_x0 must be"):
        plain(z, t, content[:, :8])
    with pytest.raises(ValueError, match="without num_classes"):
        plain(z, t, content, label=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="label must lie"):
        labelled(z, t, content, label=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="without text_dim"):
        labelled(z, t, content, text=text)
    with pytest.raises(ValueError, match="text must be"):
        tiny_dmg(text_dim=12)(z, t, content, text=text[..., :5])
    with pytest.raises(ValueError, match="not both"):
        tiny_dmg(num_classes=3, text_dim=12)


def test_tiny_dmg_overfits_fixed_latents():
    """Eq. 6 on a fixed set of 8 (latent, content, label, noise, t): the loss falls by 20x in 60 Adam
    steps."""
    torch.manual_seed(0)
    diffusion = GaussianDiffusion()  # linear, 1000 steps, eps, L2
    gen = torch.Generator().manual_seed(0)
    z0 = torch.randn(8, 3, LATENT, LATENT, generator=gen)
    content = torch.randn(8, 32, LATENT, LATENT, generator=gen)
    label = torch.arange(8) % 3
    noise = torch.randn(z0.shape, generator=gen)
    t = torch.randint(0, 1000, (8,), generator=gen)
    model = tiny_dmg(num_classes=3)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)

    def loss_fn():
        return diffusion.training_loss(model, z0, noise=noise, t=t, content=content, label=label)

    first = loss_fn().item()
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    assert loss.item() < first / 20, (first, loss.item())
