"""MCDVAEModule: manual GAN optimisation, the KL bottleneck responding to beta, validation PSNR, and
loading trained weights back (``load_mcdvae`` from a Lightning checkpoint and a save_pretrained dir)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from videogen.data import SyntheticVideoDataset
from videogen.lamd import MCDVAE, MCDVAEModule, load_mcdvae

TINY = dict(resolution=16, num_frames=8, image_channels=8, motion_channels=8, decoder_channels=8,
            channel_mult=(1, 2, 4), num_res_blocks=1, folded_frames=4, norm_groups=4)


def _loader(n: int = 4, seed: int = 0, size: int = 16) -> DataLoader:
    return DataLoader(SyntheticVideoDataset(num_videos=n, num_frames=8, size=size, seed=seed), batch_size=2)


def _trainer(tmp_path, max_steps: int) -> L.Trainer:
    return L.Trainer(accelerator="cpu", max_steps=max_steps, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                     num_sanity_val_steps=0, log_every_n_steps=1)


def _module(resolution: int = 16, **kw) -> MCDVAEModule:
    args = dict(lpips_weight=0.0, disc_weight=0.0, lr=2e-3)
    args.update(kw)
    return MCDVAEModule(MCDVAE(**{**TINY, "resolution": resolution}), **args)


def test_manual_step_with_discriminator_and_random_lpips(tmp_path):
    torch.manual_seed(0)
    module = _module(32, lpips_weight=1.0, lpips_random=True, disc_weight=0.5, disc_start=0, disc_channels=8,
                     disc_layers=2, grad_clip=1.0)
    assert len(module.configure_optimizers()) == 2
    disc_before = [p.detach().clone() for p in module.discriminator.parameters()]
    ae_before = module.autoencoder.last_layer_weight.detach().clone()
    trainer = _trainer(tmp_path, max_steps=4)  # 2 batches, each: one generator + one discriminator step
    trainer.fit(module, _loader(size=32))  # LPIPS-alex needs frames of at least 31 px
    logged = trainer.callback_metrics
    for key in ("train/rec_loss", "train/kl", "train/g_loss", "train/d_loss", "train/lpips"):
        assert torch.isfinite(logged[key]), key
    assert int(module.gen_steps) == 2
    assert all(not torch.equal(a, b) for a, b in zip(disc_before, module.discriminator.parameters()))
    assert not torch.equal(ae_before, module.autoencoder.last_layer_weight)


def test_gan_waits_for_disc_start(tmp_path):
    module = _module(disc_weight=0.5, disc_start=100, disc_channels=8, disc_layers=2)
    disc_before = [p.detach().clone() for p in module.discriminator.parameters()]
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.fit(module, _loader())
    assert "train/d_loss" not in trainer.callback_metrics
    assert all(torch.equal(a, b) for a, b in zip(disc_before, module.discriminator.parameters()))


def _kl_after_training(tmp_path, beta: float) -> float:
    torch.manual_seed(0)
    module = _module(beta=beta)
    _trainer(tmp_path, max_steps=8).fit(module, _loader())
    module.eval()
    video = next(iter(_loader()))["video"]
    with torch.no_grad():
        _, mean, logvar = module.autoencoder.encode_motion(video)
    return module._kl(mean, logvar).item()


def test_bottleneck_responds_to_beta(tmp_path):
    """With a strong KL weight the motion posterior is pushed towards N(0, I): its KL is far smaller."""
    free, squeezed = _kl_after_training(tmp_path, 0.0), _kl_after_training(tmp_path, 10.0)
    assert squeezed < 0.2 * free, (free, squeezed)


def test_validation_logs_psnr_and_checkpoint_loads_back(tmp_path):
    torch.manual_seed(0)
    module = _module()
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.fit(module, _loader())
    metrics = trainer.validate(module, _loader(seed=1), verbose=False)[0]
    assert 0 < metrics["val/psnr"] < 100 and "val/kl" in metrics
    ckpt = tmp_path / "stage1.ckpt"
    trainer.save_checkpoint(ckpt)

    video = next(iter(_loader(seed=1)))["video"]
    module.eval()
    expected = module.autoencoder(video, sample=False)[0]
    loaded = load_mcdvae(ckpt).eval()
    assert torch.equal(loaded(video, sample=False)[0], expected)
    reloaded = MCDVAEModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    assert torch.equal(reloaded.autoencoder(video, sample=False)[0], expected)
    module.autoencoder.save_pretrained(tmp_path / "vae")
    assert torch.equal(load_mcdvae(tmp_path / "vae").eval()(video, sample=False)[0], expected)


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="disc_loss"):
        _module(disc_loss="wasserstein")
    with pytest.raises(FileNotFoundError):
        load_mcdvae(tmp_path / "nothing.ckpt")
    with pytest.raises(ValueError, match="autoencoder"):
        MCDVAEModule(autoencoder=3)


def test_load_mcdvae_errors_name_the_recipe_and_the_stage(tmp_path):
    from videogen.lamd import load_mcdvae

    with pytest.raises(FileNotFoundError, match=r"recipes/lamd_bair_mcdvae.yaml"):
        load_mcdvae(tmp_path / "outputs/lamd_bair_mcdvae/checkpoints/last.ckpt")
    from videogen.core.persistence import CKPT_KEY

    other = tmp_path / "cmd.ckpt"  # a stage checkpoint of another model: it is named, with what it holds
    torch.save({"state_dict": {}, CKPT_KEY: {"class": "videogen.cmd.CMD", "config": {},
                                             "components": {"autoencoder": {}}}}, other)
    with pytest.raises(ValueError,
                       match=r"has no mcdvae \(it is a checkpoint of videogen.cmd.CMD holding autoencoder"):
        load_mcdvae(other)
    torch.save({"state_dict": {}, "hyper_parameters": {}}, other)  # not written by a videogen stage
    with pytest.raises(ValueError, match="not a videogen stage checkpoint"):
        load_mcdvae(other)
