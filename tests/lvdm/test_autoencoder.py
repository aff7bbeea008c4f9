"""LVDM 3D autoencoder: the official configuration's parameter counts and latent shape, replicate "same"
padding for even kernels, latent normalisation derived from data, and the training module (GAN on,
learned log-variance actually trained)."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from videogen.data import SyntheticVideoDataset, VideoDataModule
from videogen.lvdm import VideoAutoencoder3D, VideoAutoencoder3DModule
from videogen.lvdm.autoencoder import SamePadConv3d, SamePadConvTranspose3d


def _tiny(**kw) -> VideoAutoencoder3D:
    torch.manual_seed(0)
    return VideoAutoencoder3D(**{"hidden": 8, "strides": ((2, 2, 2), (1, 2, 2)), **kw})


def test_official_configuration_counts_and_latent_shape():
    with torch.device("meta"):
        ae = VideoAutoencoder3D()
        mean, _ = ae.encode_moments(torch.empty(1, 3, 16, 256, 256))
        video = ae.decode(mean)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert (n(ae.encoder), n(ae.decoder), n(ae)) == (7_458_952, 11_987_715, 19_446_759)  # spec, exact
    assert tuple(mean.shape) == (1, 4, 4, 32, 32) and tuple(video.shape) == (1, 3, 16, 256, 256)
    assert ae.latent_shape(16, 256, 256) == (4, 4, 32, 32)


@pytest.mark.parametrize("kernel, stride, n, out",
                         [(3, 1, 7, 7), (4, 2, 8, 4), (4, 1, 5, 5), (4, (1, 2, 2), 8, None)])
def test_same_padding_sizes_and_replicate_mode(kernel, stride, n, out):
    conv = SamePadConv3d(1, 1, kernel, stride)
    x = torch.full((1, 1, n, n, n), 2.0)
    y = conv(x)
    s = (stride,) * 3 if isinstance(stride, int) else stride
    assert tuple(y.shape[2:]) == tuple(-(-n // si) for si in s)
    # replicate padding: a constant input gives a constant output (zero padding would darken the borders)
    torch.testing.assert_close(y, torch.full_like(y, float(conv.conv.weight.sum() * 2.0 + conv.conv.bias)))
    up = SamePadConvTranspose3d(1, 1, 4, 2)
    assert tuple(up(torch.zeros(1, 1, 3, 5, 4)).shape[2:]) == (6, 10, 8)


def test_bad_inputs_are_refused():
    ae = _tiny()
    with pytest.raises(ValueError, match="multiple of 2"):
        ae.encode(torch.zeros(1, 3, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        ae.encode(torch.full((1, 3, 4, 16, 16), 2.0))


def test_latent_normalisation_is_derived_from_data_and_saved(tmp_path):
    ae = _tiny()
    data = SyntheticVideoDataset(16, num_frames=4, size=16, seed=0)
    batches = [torch.stack([data[i]["video"] for i in range(j, j + 8)]) for j in (0, 8)]
    stats = ae.calibrate(batches)
    assert stats["clips"] == 16
    z = torch.cat([ae.encode(b, sample=True) for b in batches])
    assert abs(float(z.mean())) < 0.1 and abs(float(z.std()) - 1) < 0.1
    ae.save_pretrained(tmp_path)
    again = VideoAutoencoder3D.from_pretrained(tmp_path)
    assert float(again.scale) == pytest.approx(float(ae.scale)) \
        and float(again.shift) == pytest.approx(float(ae.shift))
    torch.testing.assert_close(again.decode(z[:1]), ae.decode(z[:1]))
    torch.testing.assert_close(ae.decode(ae.encode(batches[0], sample=False)),
                               ae.decode(ae.encode(batches[0], sample=False, normalize=False),
                                         normalized=False))


def test_module_trains_with_the_gan_and_a_learned_logvar(tmp_path):
    """L1 + LPIPS (random AlexNet) + hinge PatchGAN per frame from generator step 1; the log-variance
    moves (the official code never optimised it)."""
    module = VideoAutoencoder3DModule(_tiny(), lpips_net="alex", lpips_random=True, disc_start=1,
                                      disc_channels=8, disc_layers=1, lr=1e-3)
    data = VideoDataModule(SyntheticVideoDataset(8, num_frames=4, size=32, seed=0),
                           val_dataset=SyntheticVideoDataset(2, num_frames=4, size=32, seed=1), batch_size=4)
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=data)
    metrics = trainer.callback_metrics
    assert int(module.gen_steps) == 4 and trainer.global_step == 4 + 3  # D steps from the second batch on
    assert "train/d_loss" in metrics and "val/psnr" in metrics and torch.isfinite(metrics["train/loss"])
    assert float(module.logvar) != 0.0


def test_tiny_autoencoder_overfits_a_batch_of_moving_shapes():
    """Plain L2 on 4 clips: the reconstruction error falls by more than 10x in 100 steps (measured 0.40 ->
    0.008)."""
    data = SyntheticVideoDataset(4, num_frames=8, size=32, object_size=0.25, motion="bounce", seed=0)
    x = torch.stack([data[i]["video"] for i in range(4)])
    torch.manual_seed(0)
    ae = VideoAutoencoder3D(hidden=8, strides=((2, 2, 2), (1, 2, 2)), z_channels=4)
    opt = torch.optim.Adam(ae.parameters(), lr=1e-3)
    losses = []
    for _ in range(100):
        loss = (ae(x, sample=False)[0] - x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0] / 10


def test_one_channel_per_norm_group_erases_a_plain_colour():
    """With 32 groups at width 32 GroupNorm removes each channel's mean: two plain videos of different
    colours get the same latent.  With 4 groups (8 channels each) the colour survives.  The demo's reason
    for ``norm_groups=4``; the parameter count does not depend on it."""
    red = torch.tensor([0.8, -0.6, -0.6]).view(1, 3, 1, 1, 1).expand(1, 3, 4, 8, 8)
    blue = torch.tensor([-0.6, -0.6, 0.8]).view(1, 3, 1, 1, 1).expand(1, 3, 4, 8, 8)
    latents = {}
    for groups in (32, 4):
        torch.manual_seed(0)
        ae = VideoAutoencoder3D(hidden=16, strides=((2, 2, 2),), norm_groups=groups, encoder_res_blocks=0,
                                decoder_res_blocks=0).eval()
        with torch.no_grad():
            latents[groups] = [ae.encode_moments(v)[0] for v in (red, blue)]
        assert ae.config["norm_groups"] == groups
    torch.testing.assert_close(latents[32][0], latents[32][1])
    assert (latents[4][0] - latents[4][1]).abs().max() > 0.1
    n = lambda g: sum(p.numel() for p in VideoAutoencoder3D(hidden=16, norm_groups=g).parameters())  # noqa: E731
    assert n(32) == n(4)


def test_l2_pixel_loss_option():
    module = VideoAutoencoder3DModule(VideoAutoencoder3D(hidden=8, strides=((2, 2, 2),), norm_groups=4),
                                      lpips_weight=0.0, disc_weight=0.0, pixel_loss="l2")
    recon, video = torch.zeros(1, 3, 2, 4, 4), torch.full((1, 3, 2, 4, 4), 0.5)
    rec, logs = module._rec(recon, video)
    assert rec.item() == pytest.approx(0.25) and logs["l1"].item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="pixel_loss"):
        VideoAutoencoder3DModule(VideoAutoencoder3D(hidden=8), lpips_weight=0.0, disc_weight=0.0,
                                 pixel_loss="l3")
