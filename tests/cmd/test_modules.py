"""CMD's three stages as LightningModules (pixel and SD-latent modes, DiT and SD-UNet content models,
class and text conditions), the pipeline built from their checkpoints, and learning on tiny batches."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from tests.cmd._tiny import FRAMES, tiny_autoencoder, tiny_content_dit, tiny_motion_dit, tiny_sd_dir
from tests.lamd._dmg_tiny import tiny_clip_dir
from videogen.cmd import CMD, CMDAutoencoderModule, CMDContentModule, CMDMotionModule, load_cmd_autoencoder
from videogen.core.diffusion import GaussianDiffusion
from videogen.core.sd import FrameVAE, SDUNet, sd_text_encoder
from videogen.core.text import HFTextEncoder
from videogen.data import SyntheticVideoDataset, VideoDataModule

SIZE = 32  # LPIPS-AlexNet needs frames of 31 px or more


def _data(n: int = 8) -> VideoDataModule:
    return VideoDataModule(SyntheticVideoDataset(n, num_frames=FRAMES, size=SIZE, directions=4),
                           val_dataset=SyntheticVideoDataset(4, num_frames=FRAMES, size=SIZE, seed=1,
                                                             directions=4),
                           batch_size=4)


def _fit(module, tmp_path, steps: int = 2) -> pl.Trainer:
    trainer = pl.Trainer(max_steps=steps, limit_val_batches=1, accelerator="cpu", logger=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=_data())
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    return trainer


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """A pixel-mode autoencoder trained 2 steps (4 L1 + 4 LPIPS on one random frame, random AlexNet)."""
    tmp = tmp_path_factory.mktemp("ae")
    module = CMDAutoencoderModule(tiny_autoencoder(height=SIZE, width=SIZE), lpips_net="alex",
                                  lpips_random=True, lr=1e-3)
    trainer = _fit(module, tmp)
    assert torch.isfinite(trainer.callback_metrics["train/loss"]) and "val/psnr" in trainer.callback_metrics
    assert "train/lpips" in trainer.callback_metrics
    return tmp / "last.ckpt"


def test_stage1_checkpoint_gives_the_autoencoder(stage1):
    ae = load_cmd_autoencoder(stage1)
    assert ae.content_shape == (3, SIZE, SIZE)
    with pytest.raises(FileNotFoundError, match="recipes/cmd_ucf_autoencoder.yaml"):
        load_cmd_autoencoder("outputs/cmd_ucf_autoencoder/checkpoints/last.ckpt")


@pytest.fixture(scope="module")
def class_stages(stage1, tmp_path_factory):
    """Class-conditional content DiT and motion DiT, 2 steps each, on the frozen stage-1 autoencoder."""
    tmp = tmp_path_factory.mktemp("stages")
    ae = load_cmd_autoencoder(stage1)
    frozen = {k: v.clone() for k, v in ae.state_dict().items()}
    content = CMDContentModule(tiny_content_dit(ae, num_classes=4), str(stage1), lr=1e-3)
    _fit(content, tmp / "content")
    motion = CMDMotionModule(tiny_motion_dit(ae, num_classes=4), str(stage1), lr=1e-3)
    _fit(motion, tmp / "motion")
    for module in (content, motion):
        for k, v in module.autoencoder.state_dict().items():
            assert torch.equal(v, frozen[k]), f"frozen autoencoder changed: {k}"
    return tmp / "content" / "last.ckpt", tmp / "motion" / "last.ckpt"


def test_pipeline_from_checkpoints_generates_and_round_trips(class_stages, tmp_path):
    pipe = CMD.from_checkpoints(*class_stages)
    assert pipe.conditions == ("image", "label")
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    video = pipe.generate(label=[0, 3], num_steps=3, content_steps=3, guidance_scale=4.0, generator=gen(),
                          progress=False)
    assert video.shape == (2, 3, FRAMES, SIZE, SIZE) and video.abs().max() <= 1
    pipe.save_pretrained(tmp_path / "cmd")
    again = CMD.from_pretrained(tmp_path / "cmd")
    torch.testing.assert_close(again.generate(label=[0, 3], num_steps=3, content_steps=3, generator=gen(),
                                              progress=False), video)
    image = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    assert pipe.animate(image, label=1, num_steps=2, progress=False).shape == (1, 3, FRAMES, SIZE, SIZE)
    with pytest.raises(ValueError, match=r"text given, but this CMD model takes image, label"):
        pipe.generate(text="a red square", num_steps=2, content_steps=2, progress=False)
    with pytest.raises(ValueError, match="label must be"):
        pipe.generate(label=[5], num_steps=2, content_steps=2, progress=False)
    assert pipe.reconstruct(torch.rand(1, 3, FRAMES, SIZE, SIZE) * 2 - 1).shape == (1, 3, FRAMES, SIZE, SIZE)


def test_text_to_video_with_a_stable_diffusion_content_model(tmp_path):
    """Latent mode: videos -> SD VAE latents -> autoencoder; SD UNet fine-tuned on (caption, content frame);
    motion DiT on pooled text features of the same SD text encoder."""
    sd = tiny_sd_dir(tmp_path / "sd")
    vae = FrameVAE(str(sd))
    ae_module = CMDAutoencoderModule(tiny_autoencoder(in_channels=4, mode="latent", height=SIZE // 2,
                                                      width=SIZE // 2), vae=vae, lr=1e-3)
    _fit(ae_module, tmp_path / "ae")
    stage1 = tmp_path / "ae" / "last.ckpt"
    ae = load_cmd_autoencoder(stage1)
    text = sd_text_encoder(sd, max_length=12)
    content = CMDContentModule(SDUNet(str(sd)), str(stage1), vae=vae, text_encoder=text, lr=1e-4,
                               diffusion={"beta_schedule": "scaled_linear"})
    _fit(content, tmp_path / "content")
    motion = CMDMotionModule(tiny_motion_dit(ae, text_dim=16), str(stage1), vae=vae, text_encoder=text,
                             lr=1e-3)
    _fit(motion, tmp_path / "motion")
    pipe = CMD.from_checkpoints(tmp_path / "content" / "last.ckpt", tmp_path / "motion" / "last.ckpt")
    assert pipe.conditions == ("image", "text")
    video = pipe.generate(text=["a red circle", "a blue square"], num_steps=2, content_steps=2,
                          guidance_scale=7.5, generator=torch.Generator().manual_seed(0), progress=False)
    assert video.shape == (2, 3, FRAMES, SIZE, SIZE)  # pixels, decoded per frame by the SD VAE


def test_stage_mismatches_are_refused(stage1):
    ae = load_cmd_autoencoder(stage1)
    other = tiny_autoencoder(height=SIZE, width=2 * SIZE)
    with pytest.raises(ValueError, match="do not fit"):
        CMDMotionModule(tiny_motion_dit(other), str(stage1))
    with pytest.raises(ValueError, match="needs a text_encoder"):
        CMDMotionModule(tiny_motion_dit(ae, text_dim=16), str(stage1))
    with pytest.raises(ValueError, match="text_encoder of its Stable Diffusion"):
        CMDContentModule(SDUNet(unet=_tiny_unet()), str(stage1))


def _tiny_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                                block_out_channels=(8, 16),
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=4, norm_num_groups=8)


@pytest.mark.parametrize("which", ["content", "motion"])
def test_tiny_dits_learn_to_denoise(which):
    """The eps-MSE of eq. 7 / eq. 8 on a fixed tiny batch falls at least 3x within 150 Adam steps."""
    torch.manual_seed(0)
    ae = tiny_autoencoder(height=SIZE, width=SIZE)
    data = SyntheticVideoDataset(4, num_frames=FRAMES, size=SIZE, directions=4)
    with torch.no_grad():
        content, motion = ae.encode(torch.stack([data[i]["video"] for i in range(4)]))
    label = torch.tensor([int(data[i]["label"]) for i in range(4)])
    model = (tiny_content_dit(ae, num_classes=4, hidden_size=64) if which == "content"
             else tiny_motion_dit(ae, num_classes=4, hidden_size=64))
    target, cond = (content, {"label": label}) if which == "content" else (motion,
                                                                           {"content": content,
                                                                            "label": label})
    diffusion = GaussianDiffusion()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(target.shape, generator=gen)
    t = torch.full((4,), 300)
    losses = []
    for _ in range(150):
        loss = diffusion.training_loss(model, target, noise=noise, t=t, **cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 3, (losses[0], losses[-1])


def test_text_pooling_follows_the_official_code_by_default(tmp_path, stage1):
    clip = tiny_clip_dir(tmp_path / "clip")
    text = HFTextEncoder(str(clip), max_length=12, local_files_only=True)
    ae = load_cmd_autoencoder(stage1)
    module = CMDMotionModule(tiny_motion_dit(ae, text_dim=16), str(stage1), text_encoder=text)
    batch = {"video": torch.rand(2, 3, FRAMES, SIZE, SIZE) * 2 - 1, "caption": ["ab", "abcdef"]}
    _, cond = module.encode_batch(batch, drop=False)
    # mean of all tokens
    torch.testing.assert_close(cond["text"], text.pooled(batch["caption"], masked=False))


def test_cli_sample_and_generate_with_a_saved_cmd(class_stages, tmp_path):
    from videogen import load_pretrained
    from videogen.cli import main
    from videogen.evaluation import generate_split

    CMD.from_checkpoints(*class_stages).save_pretrained(tmp_path / "cmd")
    assert isinstance(load_pretrained(tmp_path / "cmd"), CMD)
    out = tmp_path / "samples"
    assert main(["sample", "--model", str(tmp_path / "cmd"), "--out", str(out), "--label", "2",
                 "--num-samples", "2", "--num-steps", "2"]) == 0
    assert len(list(out.glob("*.mp4"))) == 2
    data = SyntheticVideoDataset(3, num_frames=FRAMES, size=SIZE, directions=4, seed=4)
    summary = generate_split(CMD.from_pretrained(tmp_path / "cmd"), data, tmp_path / "gen", 1, num_steps=2,
                             content_steps=2, progress=False)  # class-to-video: the items' labels
    assert summary["written"] == 3


def test_motion_scale_is_trained_on_stored_and_undone_before_decoding(stage1, tmp_path):
    """``motion_scale`` (spec O14): the motion DiT's data is ``scale * z``, the batch std of ``z`` is logged,
    the scale travels in the checkpoint and the saved pipeline, and sampling divides it out again."""
    from videogen.cmd import cache_latents, motion_latent_std

    ae = load_cmd_autoencoder(stage1)
    items = cache_latents(ae, [SyntheticVideoDataset(8, num_frames=FRAMES, size=SIZE)[i] for i in range(8)])
    std = motion_latent_std(items)
    z = torch.stack([it["motion_latent"] for it in items])
    assert std == pytest.approx(float(z.double().std()))
    module = CMDMotionModule(tiny_motion_dit(ae, num_classes=4), str(stage1), motion_scale=1 / std)
    batch = {"content_frame": torch.stack([it["content_frame"] for it in items]), "motion_latent": z,
             "label": torch.zeros(8, dtype=torch.long)}
    x0, _ = module.encode_batch(batch, drop=False)
    torch.testing.assert_close(x0, z / std)
    trainer = _fit(module, tmp_path / "motion")
    assert "train/motion_latent_std" in trainer.callback_metrics
    _fit(CMDContentModule(tiny_content_dit(ae, num_classes=4), str(stage1)), tmp_path / "content", steps=1)
    pipe = CMD.from_checkpoints(tmp_path / "content" / "last.ckpt", tmp_path / "motion" / "last.ckpt")
    assert pipe.motion_scale == pytest.approx(1 / std)
    pipe.save_pretrained(tmp_path / "cmd")
    assert CMD.from_pretrained(tmp_path / "cmd").motion_scale == pytest.approx(1 / std)
    # sampling divides the scale out: with the denoiser's sample replaced by a known value, z = value / scale
    seen = torch.full((2, *ae.motion_shape), 0.3)
    pipe.motion_diffusion.sample = lambda *a, **k: seen  # noqa: E731
    out = pipe.sample_motion(torch.zeros(2, *ae.content_shape), label=[0, 1], num_steps=2, progress=False)
    torch.testing.assert_close(out, (seen * std).clamp(-1, 1))
    with pytest.raises(ValueError, match="motion_scale must be > 0"):
        CMDMotionModule(tiny_motion_dit(ae), str(stage1), motion_scale=0.0)
