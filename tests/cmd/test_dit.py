"""CMD's DiTs: parameter counts of the paper sizes (meta), rectangular token grids, the motion DiT's
joint attention with only motion tokens decoded, and condition checks."""

from __future__ import annotations

import pytest
import torch

from tests.cmd._tiny import tiny_autoencoder, tiny_content_dit, tiny_motion_dit
from videogen.cmd import ContentDiT, MotionDiT


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_motion_dit_paper_sizes():
    """Official modules (spec, computed): L/2 UCF 456,915,008 trainable without a class table, with learned
    sigma; XL/2 SD2.1 674,622,784 total incl. 589,824 fixed positions + the 1,180,800 text projection.
    Ours: eps only (final layer half as wide), fixed positions as buffers, a 102-row class table for UCF."""
    with torch.device("meta"):
        ucf = MotionDiT(num_classes=101)  # DiT-L/2, key-patch 4, RGB content 3x64x64
        sd21 = MotionDiT(content_channels=4, content_height=64, content_width=128, content_patch_size=8,
                         motion_width=96, hidden_size=1152, depth=28, num_heads=16, text_dim=1024)
    assert _count(ucf) == 456_915_008 - (1024 * 64 + 64) + (1024 * 32 + 32) + 102 * 1024
    assert _count(sd21) == 674_622_784 - 512 * 1152 - (1152 * 64 + 64) + (1152 * 32 + 32) + 1_180_800
    assert ucf.num_tokens == (256, 256) and sd21.num_tokens == (384, 128)  # 512 tokens in every setting
    assert abs(_count(ucf) / 457.4e6 - 1) < 0.002 and abs(_count(sd21) / 675.2e6 - 1) < 0.001


def test_content_dit_xl2_size():
    with torch.device("meta"):
        model = ContentDiT()  # DiT-XL/2 on 3x64x64, 101 classes
    assert _count(model) == 673_785_240 - (1152 * 24 + 24) + (1152 * 12 + 12)  # official minus learned sigma


def test_motion_dit_shapes_rectangular_positions_and_motion_only_output():
    ae = tiny_autoencoder()
    model = tiny_motion_dit(ae, num_classes=3)
    assert model.grid == (2, 12) and model.content_grid == (4, 8)  # 4 x 24 motion, 16 x 32 content
    assert not torch.equal(model.pos_embed[0, 0], model.pos_embed[0, 12])  # row 1 differs from row 0
    torch.manual_seed(0)
    for p in model.parameters():  # zero-initialised adaLN / final layer would hide the inputs' effects
        if not p.any():
            p.data.normal_(0, 0.1)
    z = torch.randn(2, *ae.motion_shape)
    content = torch.rand(2, *ae.content_shape) * 2 - 1
    t = torch.tensor([5, 500])
    out = model(z, t, content, label=torch.tensor([0, 2]))
    assert out.shape == z.shape
    other = model(z, t, torch.rand_like(content), label=torch.tensor([0, 2]))
    assert not torch.allclose(out, other)  # the content frame reaches the motion tokens (joint attention)
    assert not torch.allclose(out, model(z, t, content, label=torch.tensor([1, 2])))


def test_conditions_are_checked():
    ae = tiny_autoencoder()
    model = tiny_motion_dit(ae)  # neither class nor text
    z, c = torch.randn(1, *ae.motion_shape), torch.zeros(1, *ae.content_shape)
    with pytest.raises(ValueError, match="not class-conditional"):
        model(z, torch.tensor([1]), c, label=torch.tensor([0]))
    text_model = tiny_motion_dit(ae, text_dim=16)
    with pytest.raises(ValueError, match=r"pooled features \(B, 16\)"):
        text_model(z, torch.tensor([1]), c, text=torch.zeros(1, 7))
    with pytest.raises(ValueError, match="not both"):
        tiny_motion_dit(ae, text_dim=16, num_classes=3)
    with pytest.raises(ValueError, match="content must be"):
        model(z, torch.tensor([1]), torch.zeros(1, 3, 8, 8))


def test_save_pretrained_round_trip(tmp_path):
    ae = tiny_autoencoder()
    model = tiny_content_dit(ae, num_classes=3)
    model.save_pretrained(tmp_path)
    again = ContentDiT.from_pretrained(tmp_path)
    x = torch.randn(1, *ae.content_shape)
    torch.testing.assert_close(again(x, torch.tensor([3]), label=torch.tensor([1])),
                               model(x, torch.tensor([3]), label=torch.tensor([1])))
    with pytest.raises(ValueError, match="not a videogen.cmd.MotionDiT"):
        MotionDiT.from_pretrained(tmp_path)


def test_text_changes_the_motion_output_and_guidance_uses_the_null_condition(tmp_path, monkeypatch):
    """The pooled text feature reaches the motion tokens; CMD's unconditional branch is the zero text feature
    (what training drops captions to) and the null class, with the same content frame."""
    from tests.lamd._dmg_tiny import tiny_clip_dir
    from videogen.cmd import CMD
    from videogen.core.text import HFTextEncoder

    ae = tiny_autoencoder()
    model = tiny_motion_dit(ae, text_dim=16)
    torch.manual_seed(0)
    for p in model.parameters():
        if not p.any():
            p.data.normal_(0, 0.1)
    z, t = torch.randn(2, *ae.motion_shape), torch.tensor([5, 500])
    content = torch.rand(2, *ae.content_shape) * 2 - 1
    text_a, text_b = torch.randn(2, 16), torch.randn(2, 16)
    assert not torch.allclose(model(z, t, content, text=text_a), model(z, t, content, text=text_b))
    assert torch.equal(model(z, t, content, text=torch.zeros(2, 16)), model(z, t, content, text=None))

    encoder = HFTextEncoder(str(tiny_clip_dir(tmp_path / "clip")), max_length=12, local_files_only=True)
    pipe = CMD(ae, tiny_content_dit(ae, num_classes=None, text_dim=16), model, text_encoder=encoder).eval()
    seen = {}

    def record(model_fn, shape, cond=None, uncond=None, guidance_scale=1.0, **kw):
        seen.update(cond=cond, uncond=uncond, scale=guidance_scale)
        return torch.zeros(shape)

    monkeypatch.setattr(pipe.motion_diffusion, "sample", record)
    pipe.sample_motion(content, text=["a b", "c d"], guidance_scale=3.0, progress=False)
    assert seen["scale"] == 3.0 and torch.equal(seen["uncond"]["text"], torch.zeros(2, 16))
    assert torch.equal(seen["uncond"]["content"], seen["cond"]["content"])
    assert not torch.equal(seen["cond"]["text"][0], seen["cond"]["text"][1])  # the captions differ
