"""MCD-VAE network contracts at tiny size: shapes, gradients, normalisation layer, persistence, errors,
and a tiny model that learns to reconstruct one synthetic batch."""

from __future__ import annotations

import pytest
import torch

from videogen.core.metrics.psnr_ssim import psnr_per_video
from videogen.lamd import MCDVAE, LatentNorm

TINY = dict(resolution=16, num_frames=8, image_channels=8, motion_channels=8, decoder_channels=8,
            channel_mult=(1, 2, 4), num_res_blocks=1, folded_frames=2, norm_groups=4)


def _video(b: int = 2, t: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, size, size, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def model() -> MCDVAE:
    torch.manual_seed(0)
    return MCDVAE(**TINY).eval()


def test_shapes_of_every_subnetwork(model):
    video = _video()
    content = model.encode_content(video[:, :, 0])
    # f_x0 then one feature per decoder scale, bottom (h) first
    assert [tuple(f.shape) for f in content] == [(2, 32, 4, 4), (2, 32, 4, 4), (2, 16, 8, 8), (2, 8, 16, 16)]
    assert model.content_dim == 32 and model.latent_shape == (3, 4, 4)
    assert tuple(model.motion_encoder(video).shape) == (2, 6, 4, 4)  # (B, 2d, h, w): time folded away
    z, mean, logvar = model.encode_motion(video)
    assert z.shape == mean.shape == logvar.shape == (2, 3, 4, 4)
    recon = model.decode(z, content)
    assert recon.shape == video.shape
    out, mean2, _ = model(video, sample=False)
    assert out.shape == video.shape and torch.equal(mean2, mean)


@pytest.mark.parametrize("frames,folded", [(8, 8), (16, 4)])
def test_temporal_stages_follow_num_frames(frames, folded):
    m = MCDVAE(**{**TINY, "num_frames": frames, "folded_frames": folded})
    n_t = {8: 0, 4: 2}[folded]
    assert sum(type(x).__name__ == "Downsample" and x.stride == (2, 1, 1) for x
               in m.motion_encoder.layers) == n_t
    assert len(m.decoder.temporal) == 2 * n_t  # (temporal Upsample, ResBlock) per stage
    video = _video(1, frames)
    assert m(video)[0].shape == video.shape


def test_the_stage1_loss_trains_every_parameter_including_the_dmg_condition():
    """The real stage-1 loss (MCDVAEModule.generator_loss, L1 + beta*KL) reaches every parameter, f_x0's
    head (``content_out``, the DMG's content condition) included: D_V reads f_x0."""
    from videogen.lamd import MCDVAEModule

    torch.manual_seed(0)
    module = MCDVAEModule(MCDVAE(**TINY), lpips_weight=0.0, disc_weight=0.0)
    with torch.no_grad():  # zero-initialised output convs would block gradients upstream: perturb them
        for p in module.autoencoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    loss, _, _ = module.generator_loss(_video(), gan=False)
    loss.backward()
    missing = [n for n,
               p in module.autoencoder.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing
    assert module.autoencoder.image_encoder.content_out[-1].weight.grad.abs().sum() > 0


def test_sampling_is_reproducible_with_a_generator(model):
    video = _video()
    a = model.encode_motion(video, generator=torch.Generator().manual_seed(1))[0]
    b = model.encode_motion(video, generator=torch.Generator().manual_seed(1))[0]
    c = model.encode_motion(video, generator=torch.Generator().manual_seed(2))[0]
    mode = model.encode_motion(video, sample=False)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(mode, model.encode_motion(video, sample=False)[0])


def test_latent_norm_standardises_and_freezes_in_eval():
    norm = LatentNorm(3, momentum=0.5)
    g = torch.Generator().manual_seed(0)
    scale, shift = torch.tensor([2.0, 0.5, 4.0]).view(1, 3, 1, 1), torch.tensor([1.0, -3.0, 0.0]).view(1, 3,
                                                                                                       1, 1)
    for _ in range(30):
        norm(torch.randn(64, 3, 8, 8, generator=g) * scale + shift)
    norm.eval()
    z = norm(torch.randn(64, 3, 8, 8, generator=g) * scale + shift)
    assert torch.allclose(z.mean((0, 2, 3)), torch.zeros(3), atol=0.05)
    assert torch.allclose(z.std((0, 2, 3)), torch.ones(3), atol=0.05)
    before = norm.running_mean.clone()
    norm(torch.randn(8, 3, 8, 8) + 10)
    assert torch.equal(norm.running_mean, before)


def test_checkpointing_gives_the_same_output_and_gradients():
    torch.manual_seed(0)
    a = MCDVAE(**TINY)
    b = MCDVAE(**{**TINY, "use_checkpoint": True})
    b.load_state_dict(a.state_dict())
    video = _video()
    outs = []
    for m in (a, b):
        recon = m(video, generator=torch.Generator().manual_seed(0))[0]
        recon.square().mean().backward()
        outs.append((recon.detach(), m.decoder.conv_out[-1].weight.grad.clone()))
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-6)
    assert torch.allclose(outs[0][1], outs[1][1], atol=1e-6)


def test_save_and_load_round_trip(tmp_path, model):
    model.latent_norm.running_var.fill_(4.0)  # buffers travel with the weights
    model.save_pretrained(tmp_path / "vae")
    loaded = MCDVAE.from_pretrained(tmp_path / "vae").eval()
    assert loaded.config == model.config
    video = _video()
    assert torch.equal(loaded(video, sample=False)[0], model(video, sample=False)[0])
    with pytest.raises(FileNotFoundError, match="config.json"):
        MCDVAE.from_pretrained(tmp_path / "missing")


@pytest.mark.parametrize(
    "video,match",
    [
        (torch.zeros(2, 3, 7, 16, 16), "num_frames=8"),
        (torch.zeros(2, 3, 8, 18, 18), "divisible by spatial_downsample"),
        (torch.zeros(2, 3, 8, 32, 32), "16x16"),
        (torch.zeros(2, 1, 8, 16, 16), "C=3"),
        (torch.full((2, 3, 8, 16, 16), 1.01), r"\[-1, 1\]"),
        (torch.zeros(3, 8, 16, 16), "5-D"),
    ],
)
def test_bad_videos_are_rejected_before_compute(model, video, match):
    with pytest.raises(ValueError, match=match):
        model(video)


def test_bad_decode_inputs_and_configs_are_rejected(model):
    content = model.encode_content(_video()[:, :, 0])
    with pytest.raises(ValueError, match="z_m must be"):
        model.decode(torch.zeros(2, 4, 4, 4), content)
    with pytest.raises(ValueError, match="content must be"):
        model.decode(torch.zeros(2, 3, 4, 4), content[:2])
    with pytest.raises(ValueError, match="x0"):
        model.encode_content(torch.zeros(2, 3, 8, 16, 16))
    with pytest.raises(ValueError, match="spatial_downsample"):
        MCDVAE(**{**TINY, "spatial_downsample": 8})
    with pytest.raises(ValueError, match="power of two"):
        MCDVAE(**{**TINY, "folded_frames": 3})
    assert torch.equal(model(torch.full((1, 3, 8, 16, 16), 1.0009))[0].isfinite(),
                       torch.ones(1, 3, 8, 16, 16, dtype=torch.bool))


def test_tiny_mcdvae_overfits_one_synthetic_batch():
    """A tiny model learns one batch of moving-shape videos: ~8 dB at init, > 18 dB after 80 Adam steps.

    (At 16x16 the static copy of the first frame already scores ~29 dB, so this shows learning, not
    motion capture; the motion path is checked by the beta test in test_mcdvae_module.py.)
    """
    from videogen.data import SyntheticVideoDataset

    torch.manual_seed(0)
    data = SyntheticVideoDataset(num_videos=2, num_frames=8, size=16, seed=0)
    video = torch.stack([data[i]["video"] for i in range(2)])
    m = MCDVAE(**{**TINY, "image_channels": 16, "decoder_channels": 16})

    def psnr() -> float:
        with torch.no_grad():
            return psnr_per_video(m(video, sample=False)[0].clamp(-1, 1), video).mean().item()

    start = psnr()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(80):
        loss = (m(video, sample=False)[0] - video).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = psnr()
    assert start < 12.0 and end > 18.0, (start, end)
