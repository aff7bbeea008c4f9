"""Stable Diffusion parts through the real diffusers / transformers loading code, on a tiny checkpoint
saved in the diffusers layout (nothing downloads)."""

from __future__ import annotations

import pytest
import torch

from tests.cmd._tiny import tiny_sd_dir
from videogen.core.sd import FrameVAE, SDUNet, sd_diffusion_config, sd_text_encoder


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    return tiny_sd_dir(tmp_path_factory.mktemp("sd"))


def test_frame_vae_encodes_and_decodes_every_frame(sd_dir):
    vae = FrameVAE(str(sd_dir))
    assert vae.downsample == 2 and vae.latent_channels == 4 and vae.scaling_factor == pytest.approx(0.18215)
    video = torch.rand(2, 3, 3, 16, 32) * 2 - 1
    z = vae.encode(video, sample=False)
    assert z.shape == (2, 4, 3, 8, 16)
    frame1 = vae.encode(video[:, :, 1:2], sample=False)[:, :, 0]  # frames are independent
    torch.testing.assert_close(z[:, :, 1], frame1, rtol=1e-4, atol=1e-5)
    expected = vae.vae.encode(video[:, :, 1]).latent_dist.mode() * vae.scaling_factor  # diffusers directly
    torch.testing.assert_close(frame1, expected, rtol=1e-4, atol=1e-5)
    assert vae.decode(z).shape == video.shape and vae.decode(z).abs().max() <= 1


def test_frame_vae_calibrate_gives_unit_variance_latents(sd_dir):
    vae = FrameVAE(str(sd_dir))
    videos = torch.rand(6, 3, 2, 16, 16) * 2 - 1
    # unscaled, diffusers
    raw = vae.vae.encode(videos.transpose(1, 2).reshape(-1, 3, 16, 16)).latent_dist.mode()
    std = vae.calibrate(videos.split(4))
    assert std == pytest.approx(float(raw.std()), rel=1e-4) and vae.scaling_factor == pytest.approx(1 / std)
    assert float(vae.encode(videos, sample=False).std()) == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ValueError, match="at least one batch"):
        vae.calibrate([])


def test_sd_unet_and_text_encoder_from_the_diffusers_layout(sd_dir):
    unet = SDUNet(str(sd_dir))
    text = sd_text_encoder(sd_dir, max_length=12)
    states, mask = text(["a cat", ""])
    assert states.shape == (2, 12, 16) and not text.use_attention_mask
    out = unet(torch.randn(2, 4, 8, 8), torch.tensor([10, 900]), states)
    assert out.shape == (2, 4, 8, 8)
    rebuilt = SDUNet(config=unet.config["config"])
    rebuilt.load_state_dict(unet.state_dict())
    torch.testing.assert_close(rebuilt(torch.ones(1, 4, 8, 8), torch.tensor([3]), states[:1]),
                               unet(torch.ones(1, 4, 8, 8), torch.tensor([3]), states[:1]))
    assert sd_diffusion_config(sd_dir) == {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear",
                                           "beta_start": 0.00085, "beta_end": 0.012,
                                           "prediction_type": "epsilon"}


def test_missing_components_name_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="unet.*diffusers layout"):
        SDUNet(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="scheduler_config.json"):
        sd_diffusion_config(tmp_path)
