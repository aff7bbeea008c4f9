"""LVDM 3D UNet: official parameter counts (and the inferred paper-size variant), correct Shaw relative
attention against a float64 loop, shared tables across clip lengths, spatial-only resampling, learning."""

from __future__ import annotations

import pytest
import torch

from videogen.core.diffusion import GaussianDiffusion
from videogen.lvdm.unet3d import FactorizedAttention, UNet3D, relative_attention


def _tiny(**kw) -> UNet3D:
    torch.manual_seed(0)
    cfg = dict(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(1, 2),
               num_heads=2)
    return UNet3D(**{**cfg, **kw})


def test_official_and_paper_size_parameter_counts():
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    with torch.device("meta"):
        official, paper, no_rel = UNet3D(), UNet3D(channel_mult=(1, 2, 3,
                                                                 3)), UNet3D(max_relative_distance=None)
        out = official(torch.empty(1, 4, 4, 32, 32), torch.zeros(1, dtype=torch.long))
    assert n(official) == 548_904_580  # the official config, counted from the official modules (spec §2)
    assert (n(official.time_embed), n(official.input_blocks), n(official.middle_block),
            n(official.output_blocks),
            n(official.out)) == (1_312_768, 171_957_120, 50_364_928, 325_260_032, 9_732)
    assert n(paper) == 418_366_340  # inferred match of Table 2's 418M
    assert n(official) - n(no_rel) == 77_184  # the relative-position tables
    assert sum(isinstance(m, FactorizedAttention) for m in official.modules()) == 22
    assert tuple(out.shape) == (1, 4, 4, 32, 32)


def test_relative_attention_matches_the_shaw_formula_in_float64():
    g = torch.Generator().manual_seed(0)
    n, h, t, d = 2, 3, 5, 8
    q, k, v = (torch.randn(n, h, t, d, generator=g, dtype=torch.float64) for _ in range(3))
    table_k, table_v = (torch.randn(9, d, generator=g, dtype=torch.float64) for _ in range(2))
    idx = (torch.arange(t)[None, :] - torch.arange(t)[:, None]).clamp(-4, 4) + 4
    got = relative_attention(q, k, v, table_k[idx], table_v[idx])
    ref = torch.empty_like(got)
    for i in range(t):
        logits = torch.stack([(q[:, :, i] * (k[:, :, j] + table_k[idx[i, j]])).sum(-1) for j in range(t)],
                             -1) / d**0.5
        p = logits.softmax(-1)  # (n, h, t)
        ref[:, :, i] = sum(p[..., j, None] * (v[:, :, j] + table_v[idx[i, j]]) for j in range(t))
    torch.testing.assert_close(got, ref)


def test_clip_lengths_share_the_tables_and_time_is_never_resampled():
    model = _tiny()
    for p in model.parameters():  # zero-initialised projections would hide the temporal path
        if not p.any():
            p.data.normal_(0, 0.05)
    t = torch.tensor([10, 700])
    for frames in (4, 5, 1):  # short / prediction / interpolation lengths, and a single latent
        x = torch.randn(2, 4, frames, 8, 8)
        assert model(x, t).shape == x.shape
    x = torch.randn(1, 4, 4, 8, 8)
    shuffled = model(x[:, :, [1, 0, 2, 3]], t[:1])[:, :, [1, 0, 2, 3]]
    assert not torch.allclose(shuffled, model(x, t[:1]), atol=1e-4)  # relative positions see frame order
    with pytest.raises(ValueError, match="divisible by 2"):
        model(torch.randn(1, 4, 4, 7, 8), t[:1])


def test_initial_output_is_zero_and_a_tiny_unet_learns_to_denoise():
    model = _tiny()
    x0 = torch.randn(4, 4, 4, 8, 8, generator=torch.Generator().manual_seed(0)).tanh()
    assert model(x0, torch.full((4,), 5)).abs().max() == 0  # zero-initialised output conv
    diffusion = GaussianDiffusion(beta_schedule="scaled_linear", beta_start=0.0015, beta_end=0.0155,
                                  loss_type="l1")
    noise, t = torch.randn_like(x0), torch.full((4,), 400)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(100):
        loss = diffusion.training_loss(model, x0, noise=noise, t=t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 2, (losses[0], losses[-1])


def test_short_module_calibrates_the_latents_and_trains(tmp_path):
    """Stage 2 on a frozen, uncalibrated autoencoder: scale/shift are derived from the training clips at the
    start of fit (then saved), the UNet trains on unit-variance latents, and it samples videos."""
    import lightning.pytorch as pl

    from videogen.data import SyntheticVideoDataset, VideoDataModule
    from videogen.lvdm import LVDMShortModule, VideoAutoencoder3D, load_video_autoencoder

    torch.manual_seed(0)
    VideoAutoencoder3D(hidden=8, strides=((2, 2, 2), (1, 2, 2))).save_pretrained(tmp_path / "ae")
    module = LVDMShortModule(_tiny(), str(tmp_path / "ae"), calibrate_latents=8, lr=1e-3)
    assert not module.calibrated
    data = VideoDataModule(SyntheticVideoDataset(8, num_frames=8, size=32), batch_size=4)
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    assert module.calibrated and torch.isfinite(trainer.callback_metrics["train/loss"])
    trainer.save_checkpoint(tmp_path / "short.ckpt")
    ckpt = torch.load(tmp_path / "short.ckpt", weights_only=True)
    assert float(ckpt["state_dict"]["autoencoder.scale"]) == float(module.autoencoder.scale) != 1.0
    videos = module.sample(2, num_frames=8, height=32, width=32, num_steps=2)
    assert videos.shape == (2, 3, 8, 32, 32)
    with pytest.raises(FileNotFoundError, match="autoencoder recipe"):
        load_video_autoencoder(tmp_path / "missing.ckpt")


def test_temporal_kernel_sets_the_resblock_and_in_out_convolutions_only():
    """``temporal_kernel=1`` is LVDM's (1, 3, 3) everywhere; 3 gives (3, 3, 3) convolutions in the ResBlocks
    and the in / out layers, resampling stays (1, 3, 3), and the output keeps the clip length."""
    from videogen.core.nn import Downsample, Upsample

    for kernel in (1, 3):
        model = _tiny(temporal_kernel=kernel)
        resampling = {id(c) for m in model.modules() if isinstance(m, (Downsample, Upsample))
                      for c in m.modules() if isinstance(c, torch.nn.Conv3d)}
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
        assert {m.kernel_size for m in convs if id(m) in resampling} == {(1, 3, 3)}
        assert {m.kernel_size for m in convs if id(m) not in resampling} - {(1, 1, 1)} == {(kernel, 3, 3)}
        x = torch.randn(1, 4, 5, 8, 8)
        assert model(x, torch.tensor([10])).shape == x.shape
    assert _tiny(temporal_kernel=3).config["temporal_kernel"] == 3
    with pytest.raises(ValueError, match="odd"):
        _tiny(temporal_kernel=2)
