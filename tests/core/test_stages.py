"""core.stages.AutoencoderGANStage: a tiny subclass learns; the NaN policy and gradient clipping hold for
both real subclasses (LaMD's MCDVAEModule and LVDM's VideoAutoencoder3DModule)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from videogen.core.losses import DiagonalGaussian, ReconstructionLoss
from videogen.core.stages import AutoencoderGANStage
from videogen.data import SyntheticVideoDataset
from videogen.lamd import MCDVAE, MCDVAEModule
from videogen.lvdm import VideoAutoencoder3D, VideoAutoencoder3DModule


class _PointwiseVAE(nn.Module):
    """1x1x1 convolutions: video (B, 3, T, H, W) -> posterior (B, 4, T, H, W) -> video."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder, self.decoder = nn.Conv3d(3, 8, 1), nn.Conv3d(4, 3, 1)

    def forward(self, video: torch.Tensor, sample: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(video).chunk(2, dim=1)  # (B, 4, T, H, W) each
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if sample else mean
        return self.decoder(z), mean, logvar


class _TinyStage(AutoencoderGANStage):
    """The smallest subclass: only how to autoencode and the decoder's last weight."""

    def __init__(self, **kw) -> None:
        disc = nn.Conv3d(3, 1, 3, padding=1)
        super().__init__(_PointwiseVAE(), ReconstructionLoss(lpips_weight=0.0), disc,
                         **{**dict(kl_weight=1e-4, disc_weight=0.5, disc_start=10, disc_loss="hinge", lr=1e-2,
                                   betas=(0.5, 0.9)), **kw})

    def autoencode(self, video: torch.Tensor, sample: bool) -> tuple[torch.Tensor, DiagonalGaussian]:
        recon, mean, logvar = self.autoencoder(video, sample)
        return recon, DiagonalGaussian(mean, logvar)

    @property
    def last_layer_weight(self) -> torch.Tensor:
        return self.autoencoder.decoder.weight


def _videos(n: int = 2, frames: int = 4, size: int = 16) -> torch.Tensor:
    data = SyntheticVideoDataset(num_videos=n, num_frames=frames, size=size, seed=0)
    return torch.stack([data[i]["video"] for i in range(n)])  # (n, 3, T, H, W)


def _loader(video: torch.Tensor, repeats: int = 1) -> DataLoader:
    return DataLoader([{"video": v} for v in video] * repeats, batch_size=video.shape[0])


def _trainer(tmp_path, max_steps: int, callbacks=()) -> L.Trainer:
    return L.Trainer(accelerator="cpu", max_steps=max_steps, max_epochs=1, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     default_root_dir=tmp_path,
                     num_sanity_val_steps=0, callbacks=list(callbacks))


def test_a_tiny_subclass_learns_on_a_fixed_batch(tmp_path):
    """60 batches of the same 2 clips; the GAN (and its discriminator optimiser) joins at generator step
    40."""
    torch.manual_seed(0)
    module, video = _TinyStage(disc_start=40), _videos()
    with torch.no_grad():
        before = float(module.reconstruction_loss(module.autoencode(video, sample=False)[0], video)[0])
    trainer = _trainer(tmp_path, max_steps=80)
    trainer.fit(module, _loader(video, repeats=60))
    with torch.no_grad():
        after = float(module.reconstruction_loss(module.autoencode(video, sample=False)[0], video)[0])
    assert int(module.gen_steps) == 60 and trainer.global_step == 60 + 20
    assert after < 0.5 * before, (before, after)
    assert "train/d_loss" in trainer.callback_metrics \
        and "train/disc_adaptive_weight" in trainer.callback_metrics


def _mcdvae(**kw) -> tuple[MCDVAEModule, torch.Tensor]:
    ae = MCDVAE(resolution=16, num_frames=8, image_channels=8, motion_channels=8, decoder_channels=8,
                channel_mult=(1, 2, 4), num_res_blocks=1, folded_frames=4, norm_groups=4)
    return MCDVAEModule(ae, lpips_weight=0.0, disc_start=0, disc_channels=8, disc_layers=2, lr=1e-3, **kw), \
        _videos(frames=8)


def _lvdm(**kw) -> tuple[VideoAutoencoder3DModule, torch.Tensor]:
    ae = VideoAutoencoder3D(hidden=8, strides=((2, 2, 2),), z_channels=4, norm_groups=4)
    return VideoAutoencoder3DModule(ae, lpips_weight=0.0, disc_start=0, disc_channels=8, disc_layers=1,
                                    lr=1e-3, **kw), _videos(frames=4)


def _tiny(**kw) -> tuple[_TinyStage, torch.Tensor]:
    return _TinyStage(disc_start=0, **kw), _videos()


SUBCLASSES = pytest.mark.parametrize("make", [_mcdvae, _lvdm, _tiny],
                                     ids=["MCDVAEModule", "VideoAutoencoder3DModule", "tiny"])


def _poison(module: AutoencoderGANStage) -> None:
    """A NaN in the decoder's last weight: every reconstruction, hence rec_loss, is NaN."""
    with torch.no_grad():
        module.last_layer_weight.view(-1)[0] = float("nan")


@SUBCLASSES
def test_nan_policy_raise_names_the_step_and_term(tmp_path, make):
    torch.manual_seed(0)
    module, video = make()
    _poison(module)
    with pytest.raises(FloatingPointError, match=r"global step 0.*rec_loss=nan"):
        _trainer(tmp_path, max_steps=2).fit(module, _loader(video))


@SUBCLASSES
def test_nan_policy_skip_skips_the_whole_batch(tmp_path, make):
    """Skipped: no generator step, no discriminator step (the stricter of the two former modules)."""
    torch.manual_seed(0)
    module, video = make(nan_policy="skip")
    _poison(module)
    disc_before = [p.detach().clone() for p in module.discriminator.parameters()]
    trainer = _trainer(tmp_path, max_steps=4)
    trainer.fit(module, _loader(video, repeats=2))  # 2 batches, both skipped
    assert module.skipped_nonfinite == 2 and int(module.gen_steps) == 0 and trainer.global_step == 0
    assert all(torch.equal(a, b) for a, b in zip(disc_before, module.discriminator.parameters()))


class _GradNorms(L.Callback):
    """Total gradient norm of each optimiser's parameters just before its step (after clipping)."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))


@SUBCLASSES
def test_grad_clip_bounds_both_optimisers(tmp_path, make):
    """Unclipped, some step's gradient norm exceeds 1e-3; with ``grad_clip=1e-3`` no step's does (both the
    generator's and the discriminator's)."""
    norms = {}
    for clip in (None, 1e-3):
        torch.manual_seed(0)
        module, video = make(grad_clip=clip)
        spy = _GradNorms()
        _trainer(tmp_path, max_steps=4, callbacks=[spy]).fit(module, _loader(video, repeats=2))
        assert len(spy.norms) == 4  # 2 batches x (generator + discriminator)
        norms[clip] = spy.norms
    assert max(norms[None]) > 1e-3
    assert max(norms[1e-3]) <= 1e-3 * (1 + 1e-4), norms[1e-3]


def test_accumulate_sums_the_gradients_of_several_batches(tmp_path, monkeypatch):
    """``accumulate=2`` on two batches of 2 takes the optimiser step that one batch of 4 takes (GAN off,
    posterior means: every term is a batch mean); with the GAN on, both optimisers step every 2 batches
    and ``disc_start`` counts those steps. Lightning refuses its own accumulate_grad_batches here."""
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)  # z = mean: no sampling noise to match
    video = _videos(n=4)
    steps = {}
    for accumulate, batch in ((1, 4), (2, 2)):
        torch.manual_seed(0)
        module = _TinyStage(disc_start=100, accumulate=accumulate)
        loader = DataLoader([{"video": v} for v in video], batch_size=batch)
        _trainer(tmp_path, max_steps=1).fit(module, loader)
        steps[accumulate] = module
        assert int(module.gen_steps) == 1 and int(module.micro_steps) == accumulate
    for (name, a), b in zip(steps[1].autoencoder.named_parameters(), steps[2].autoencoder.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    torch.manual_seed(0)
    start = _TinyStage(disc_start=100).autoencoder.state_dict()
    assert any(not torch.equal(start[k], v) for k, v in steps[2].autoencoder.state_dict().items())

    torch.manual_seed(0)
    gan = _TinyStage(disc_start=1, accumulate=2)
    trainer = _trainer(tmp_path, max_steps=100)
    trainer.fit(gan, _loader(video[:2], repeats=6))  # 6 batches: 3 windows, the GAN from window 2 on
    assert int(gan.gen_steps) == 3 and int(gan.micro_steps) == 6
    assert trainer.global_step == 3 + 2  # generator steps + discriminator steps
    with pytest.raises(ValueError, match="accumulate"):
        _TinyStage(accumulate=0)
