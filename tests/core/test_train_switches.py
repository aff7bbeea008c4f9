"""The cluster switches: ``compile`` and ``optimizer`` of every TrainingModule, the EMA's foreach update
and its sharded (DTensor / FSDP2) path, and sample videos to TensorBoard and W&B without moviepy."""

from __future__ import annotations

import io
import json
import os
import sys
import types
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from videogen.core.callbacks import EMA, VideoSampleLogger, ema_update_, video_gif
from videogen.core.losses import DiagonalGaussian, ReconstructionLoss
from videogen.core.persistence import checkpoint_record
from videogen.core.stages import AutoencoderGANStage
from videogen.core.training import build_optimizer, compile_settings, optimizer_settings
from videogen.lamd import MCDVAE, MCDVAEModule
from videogen.lvdm import VideoAutoencoder3D, VideoAutoencoder3DModule


class _PointwiseVAE(nn.Module):
    """1x1x1 convolutions: video (B, 3, T, H, W) -> posterior (B, 4, T, H, W) -> video."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder, self.decoder = nn.Conv3d(3, 8, 1), nn.Conv3d(4, 3, 1)

    def forward(self, video: torch.Tensor, sample: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(video).chunk(2, dim=1)  # (B, 4, T, H, W) each
        return self.decoder(mean), mean, logvar


class _Tiny(AutoencoderGANStage):
    """A GAN stage on 1x1x1 convolutions (the discriminator joins at once)."""

    def __init__(self, **kw) -> None:
        super().__init__(_PointwiseVAE(), ReconstructionLoss(lpips_weight=0.0), nn.Conv3d(3, 1, 1),
                         **{**dict(kl_weight=1e-4, disc_weight=0.5, disc_start=0, disc_loss="hinge", lr=1e-2,
                                   betas=(0.5, 0.9)), **kw})

    def autoencode(self, video: torch.Tensor, sample: bool) -> tuple[torch.Tensor, DiagonalGaussian]:
        recon, mean, logvar = self.autoencoder(video, sample)
        return recon, DiagonalGaussian(mean, logvar)

    @property
    def last_layer_weight(self) -> torch.Tensor:
        return self.autoencoder.decoder.weight


def _mcdvae(**kw) -> MCDVAEModule:
    ae = MCDVAE(resolution=16, num_frames=8, image_channels=8, motion_channels=8, decoder_channels=8,
                channel_mult=(1, 2, 4), num_res_blocks=1, folded_frames=4, norm_groups=4)
    return MCDVAEModule(ae, lpips_weight=0.0, disc_start=0, disc_channels=8, disc_layers=2, lr=1e-3, **kw)


def _trainer(tmp_path, max_steps: int = 1, callbacks=(), **kw) -> pl.Trainer:
    return pl.Trainer(**{**dict(accelerator="cpu", max_steps=max_steps, max_epochs=1, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, default_root_dir=tmp_path,
                                num_sanity_val_steps=0, callbacks=list(callbacks)), **kw})


def _videos(n: int = 2, frames: int = 4, size: int = 8) -> torch.Tensor:
    return torch.rand(n, 3, frames, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


# ---- compile ----------------------------------------------------------------------------------------------
def test_compile_settings_accept_the_recipe_forms_and_name_bad_ones():
    assert compile_settings(False) is None and compile_settings(None) is None
    assert compile_settings(True) == {}
    assert compile_settings("max-autotune") == {"mode": "max-autotune"}
    assert compile_settings({"mode": "default", "dynamic": False}) == {"mode": "default", "dynamic": False}
    with pytest.raises(ValueError, match="compile mode must be one of"):
        compile_settings("fastest")
    with pytest.raises(ValueError, match=r"unknown keys \['fast'\]"):
        compile_settings({"fast": True})


def test_compile_wraps_the_trained_networks_in_place_and_keeps_checkpoint_keys():
    """The autoencoder and discriminator are compiled (in place: same objects), the frozen LPIPS-free loss
    is not; state_dict keys and the pipeline record name no ``_orig_mod``."""
    eager, compiled = _mcdvae(), _mcdvae(compile={"mode": "default"})
    assert eager.compile_networks() == []
    ae = compiled.autoencoder
    assert compiled.compile_networks() == ["autoencoder", "discriminator"]
    assert compiled.autoencoder is ae and ae._compiled_call_impl is not None
    assert compiled.discriminator._compiled_call_impl is not None
    assert list(compiled.state_dict()) == list(eager.state_dict())
    record = checkpoint_record(compiled.pipeline_name, compiled.pipeline_parts(),
                               compiled.pipeline_settings())
    assert "_orig_mod" not in json.dumps(record, default=str)
    assert "_orig_mod" not in "".join(compiled.autoencoder.state_dict())
    assert compiled.hparams.compile == {"mode": "default"}  # the recipe value is saved with the checkpoint


def test_compile_of_a_diffusion_stage_is_its_network_only():
    from videogen.lvdm import LVDMShortModule, UNet3D

    ae = VideoAutoencoder3D(hidden=8, strides=((2, 2, 2),), z_channels=4, norm_groups=4)
    unet = UNet3D(model_channels=8, channel_mult=(1,), num_res_blocks=1, attention_resolutions=(),
                  num_heads=1)
    module = LVDMShortModule(unet, ae, compile=True)
    assert module.trained_networks() == {"unet": unet}
    assert module.compile_networks() == ["unet"]
    assert getattr(module.autoencoder, "_compiled_call_impl", None) is None  # frozen stages stay eager


def _one_step_loss(tmp_path, **kw) -> tuple[float, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    module = _Tiny(**kw)
    losses = []

    class _Keep(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"] if isinstance(outputs, dict) else outputs))

    loader = DataLoader([{"video": v} for v in _videos()], batch_size=2)
    _trainer(tmp_path, max_steps=2, callbacks=[_Keep()]).fit(module, loader)
    return losses[0], {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.slow
def test_a_compiled_training_step_gives_the_eager_loss(tmp_path):
    """Inductor on the CPU (minutes on a busy 2-core machine): the same loss and weights after one GAN
    step (generator + discriminator optimiser steps) as eager."""
    loss, state = _one_step_loss(tmp_path / "eager")
    loss_c, state_c = _one_step_loss(tmp_path / "compiled", compile=True)
    assert list(state) == list(state_c)
    assert loss_c == pytest.approx(loss, rel=1e-5, abs=1e-6)
    for k in state:
        torch.testing.assert_close(state_c[k], state[k], rtol=1e-4, atol=1e-5)


# ---- optimizer --------------------------------------------------------------------------------------------
def test_optimizer_settings_name_bad_values_and_missing_bitsandbytes(monkeypatch):
    assert optimizer_settings(None) is None
    assert optimizer_settings("adamw") == {"name": "adamw"}
    with pytest.raises(ValueError, match="optimizer name must be one of"):
        optimizer_settings("lion")
    with pytest.raises(ValueError, match=r"unknown keys \['momentum'\]"):
        optimizer_settings({"name": "adam", "momentum": 0.9})
    with pytest.raises(ValueError, match=r"unknown keys \['fused'\]"):
        optimizer_settings({"name": "adamw8bit", "fused": True})
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: None if n == "bitsandbytes" else real(n, *a))
    with pytest.raises(ImportError, match=r"'adamw8bit' needs the bitsandbytes package: pip install"):
        _mcdvae(optimizer="adamw8bit")


def _hyper(opt: torch.optim.Optimizer) -> dict:
    return {k: v for k, v in opt.defaults.items()}


def test_default_optimizers_are_the_modules_own():
    """No ``optimizer``: the GAN stages build two Adams with their betas (as before the switch)."""
    for module in (_mcdvae(), VideoAutoencoder3DModule(
            VideoAutoencoder3D(hidden=8, strides=((2, 2, 2),), z_channels=4, norm_groups=4), lpips_weight=0.0,
            disc_start=0, disc_channels=8, disc_layers=1, lr=3.6e-5)):
        opt_g, opt_d = module.configure_optimizers()
        ref_g = torch.optim.Adam(module.generator_parameters(), lr=module.lr, betas=module.betas)
        ref_d = torch.optim.Adam(module.discriminator.parameters(), lr=module.lr, betas=module.betas)
        assert type(opt_g) is torch.optim.Adam and type(opt_d) is torch.optim.Adam
        assert _hyper(opt_g) == _hyper(ref_g) and _hyper(opt_d) == _hyper(ref_d)
        assert [p for g in opt_g.param_groups for p in g["params"]] == list(module.generator_parameters())


def test_recipe_optimizer_swaps_the_class_keeps_betas_and_the_scaled_lr():
    module = _mcdvae(scale_lr=True, optimizer={"name": "adamw", "fused": True, "weight_decay": 0.0})
    module._trainer = SimpleNamespace(datamodule=SimpleNamespace(batch_size=4), num_devices=2, num_nodes=1,
                                      accumulate_grad_batches=3)
    opts = module.configure_optimizers()
    assert len(opts) == 2  # the two-optimiser GAN stage stays two optimisers
    for opt in opts:
        assert type(opt) is torch.optim.AdamW
        assert opt.defaults["lr"] == pytest.approx(1e-3 * 2 * 4 * 3)
        assert opt.defaults["betas"] == (0.5, 0.9) and opt.defaults["fused"] is True
        assert opt.defaults["weight_decay"] == 0.0


def test_fused_adamw_steps_like_the_default_kernel():
    torch.manual_seed(0)
    weights = [torch.randn(7, 5), torch.randn(5)]
    results = []
    for settings in (None, {"name": "adamw", "fused": True}, {"name": "adamw", "foreach": False}):
        params = [nn.Parameter(w.clone()) for w in weights]
        opt = build_optimizer(params, 1e-2, {"name": "adamw", "weight_decay": 0.01}, settings)
        for step in range(5):
            opt.zero_grad()
            sum(((p - step) ** 2).sum() for p in params).backward()
            opt.step()
        results.append([p.detach() for p in params])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


# ---- EMA --------------------------------------------------------------------------------------------------
def test_ema_foreach_update_equals_the_loop_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(33, 17, generator=g), torch.randn(5, generator=g),
              torch.randn(4, 4, generator=g).bfloat16(), torch.randn(3, 2, 2, generator=g).half()]
    loop = [p.float().clone() for p in params]
    fused = [p.float().clone() for p in params]
    for n in range(20):
        moved = [p + 0.1 * torch.randn(p.shape, generator=g).to(p.dtype) for p in params]
        weight = 1.0 - min(0.999, (1 + n) / (10 + n))
        ema_update_(loop, moved, weight, foreach=False)
        ema_update_(fused, moved, weight, foreach=True)
    assert all(torch.equal(a, b) for a, b in zip(loop, fused))
    assert not torch.equal(loop[0], params[0].float())


class _Linear(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(3, 2)

    def training_step(self, batch, batch_idx):
        return (self.net(batch) ** 2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def test_ema_foreach_and_loop_callbacks_train_to_the_same_average(tmp_path):
    averages = []
    for foreach in (True, False):
        torch.manual_seed(0)
        module, ema = _Linear(), EMA(decay=0.9, foreach=foreach)
        loader = DataLoader(torch.randn(20, 3), batch_size=4)
        _trainer(tmp_path, max_steps=5, callbacks=[ema]).fit(module, loader)
        averages.append(module.net.weight.detach().clone())
    assert torch.equal(*averages)


def _sharded_ema_check(rank: int, world: int, out_dir: str) -> None:
    """On a ``fully_shard``-ed MLP (DTensor parameters, ``world`` CPU ranks): the EMA averages local shards,
    its checkpoint holds the full average and raw weights of an unsharded reference, and a resume puts
    both back.  Writes ``rank<r>.json`` with the checks' outcome."""
    import copy

    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (world,))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
    ref = copy.deepcopy(model)
    ema, ref_avg = EMA(decay=0.8, warmup=False), None

    class _Strategy:
        def lightning_module_state_dict(self):
            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            return get_model_state_dict(model, options=options)

    trainer = SimpleNamespace(strategy=_Strategy(), model=model, global_step=0)
    ema.setup(trainer, model, "fit")  # Lightning: before the strategy shards the module
    fully_shard(model[0], mesh=mesh)
    fully_shard(model, mesh=mesh)
    ema.on_fit_start(trainer, model)
    opt, ref_opt = torch.optim.SGD(model.parameters(), lr=0.3), torch.optim.SGD(ref.parameters(), lr=0.3)
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(1))
    for step in range(1, 4):
        for m, o in ((model, opt), (ref, ref_opt)):
            o.zero_grad()
            (m(x * step) ** 2).mean().backward()
            o.step()
        trainer.global_step = step
        ema.on_train_batch_end(trainer, model, None, None, 0)
        w = {n: p.detach().clone() for n, p in ref.named_parameters()}
        ref_avg = w if ref_avg is None else {n: 0.8 * ref_avg[n] + 0.2 * w[n] for n in w}
    local_ok = all(type(p).__name__ == "DTensor" and ema._shadow[n].shape == p.to_local().shape
                   for n, p in model.named_parameters())
    ckpt = {"state_dict": trainer.strategy.lightning_module_state_dict()}
    ema.on_save_checkpoint(trainer, model, ckpt)
    ref_raw = dict(ref.named_parameters())
    saved_ok = rank != 0 or all(
        torch.allclose(ckpt["state_dict"][n], ref_avg[n], atol=1e-6)
        and torch.allclose(ckpt["current_model_state"][n], ref_raw[n], atol=1e-6) for n in ref_avg)
    # resume: the strategy loaded the average into the shards, the callback puts the raw weights back
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    # (a copy: it replaces the dict's tensors with DTensors)
    set_model_state_dict(model, dict(ref_avg), options=StateDictOptions(full_state_dict=True))
    ema2 = EMA(decay=0.8, warmup=False)
    ema2.setup(trainer, model, "fit")
    ema2.on_fit_start(trainer, model)
    raw = {n: v.detach() for n, v in ref_raw.items()}
    ema2.on_load_checkpoint(trainer, model, {"state_dict": ref_avg, "current_model_state": raw})
    full = {n: p.full_tensor() for n, p in model.named_parameters()}
    from torch.distributed.tensor import DTensor

    avg_full = {n: DTensor.from_local(ema2._shadow[n], mesh, p.placements, shape=p.shape,
                                      stride=p.stride()).full_tensor()  # uneven shards: give the shape
                for n, p in model.named_parameters()}
    resumed_ok = all(torch.allclose(full[n], ref_raw[n], atol=1e-6)
                     and torch.allclose(avg_full[n], ref_avg[n], atol=1e-6) for n in ref_avg)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"local": local_ok, "saved": saved_ok, "resumed": resumed_ok, "sharded": ema._sharded}, f)


def _sharded_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        _sharded_ema_check(rank, world, out_dir)
    finally:
        dist.destroy_process_group()


def _run_sharded(tmp_path, world: int) -> list[dict]:
    import torch.multiprocessing as mp

    mp.spawn(_sharded_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world)
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]


def test_ema_on_dtensor_parameters_one_rank(tmp_path):
    """``fully_shard`` on a 1-process gloo group in this process: DTensor parameters, the sharded code path
    end to end (the two-rank test below spawns processes and takes a minute here)."""
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        _sharded_ema_check(0, 1, str(tmp_path))
    finally:
        dist.destroy_process_group()
    result = json.loads((tmp_path / "rank0.json").read_text())
    assert result == {"local": True, "saved": True, "resumed": True, "sharded": True}


@pytest.mark.ddp
def test_ema_on_fsdp2_shards_two_ranks(tmp_path):
    """Two CPU ranks (7 s here): rank 0 holds 3 of 5 rows of the first layer, rank 1 two."""
    results = _run_sharded(tmp_path, world=2)
    assert results == [{"local": True, "saved": True, "resumed": True, "sharded": True}] * 2


# ---- sample videos ----------------------------------------------------------------------------------------
class _Sampler(_Linear):
    def validation_step(self, batch, batch_idx):
        return None

    def sample_videos(self, batch, num):
        t = torch.linspace(-1, 1, 5)
        return t.view(1, 1, 5, 1, 1).expand(num + 1, 3, 5, 6, 7).contiguous()  # brightness rises per frame


def test_video_gif_has_one_frame_per_video_frame():
    from PIL import Image

    gif = Image.open(io.BytesIO(video_gif(_Sampler().sample_videos(None, 1), fps=4)))
    assert gif.n_frames == 5 and gif.size == (2 * 7, 6)
    gif.seek(4)
    assert gif.convert("L").getpixel((0, 0)) > 250  # the last frame is white (+1)


def test_sample_logger_writes_an_animated_gif_to_tensorboard(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="tb")
    loader = DataLoader(torch.randn(4, 3), batch_size=2)
    _trainer(tmp_path, max_steps=1, callbacks=[VideoSampleLogger(num_samples=2, fps=5)], logger=logger,
             limit_train_batches=1, limit_val_batches=1).fit(_Sampler(), loader, loader)
    logger.experiment.flush()
    acc = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    acc.Reload()
    assert {"samples/video", "samples/contact_sheet"} <= set(acc.Tags()["images"])
    (event,) = acc.Images("samples/video")
    gif = Image.open(io.BytesIO(event.encoded_image_string))
    assert gif.format == "GIF" and gif.n_frames == 5 and (event.width, event.height) == gif.size == (14, 6)
    assert gif.info["duration"] == 200


def test_sample_logger_hands_gif_videos_to_a_wandb_logger(tmp_path, monkeypatch):
    """wandb is not installed here: a stand-in ``wandb`` module and a ``WandbLogger`` without a run."""
    from lightning.pytorch.loggers import Logger, WandbLogger

    logged = []

    class _Video:
        def __init__(self, path, fps=None, format=None):
            from PIL import Image

            with Image.open(path) as img:  # the file exists when the video is made (W&B copies it then)
                self.frames, self.size = img.n_frames, img.size
            self.fps, self.format = fps, format

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(Video=_Video))

    class _FakeWandb(WandbLogger):
        def __init__(self):
            Logger.__init__(self)
            self._experiment, self._log_model, self._prefix, self._checkpoint_callbacks = None, False, "", {}

        @property
        def name(self):
            return "fake"

        @property
        def version(self):
            return "0"

        @property
        def experiment(self):
            return None

        def log_metrics(self, metrics, step=None):
            logged.append((metrics, step))

        def log_hyperparams(self, *a, **k):
            pass

        @property
        def save_dir(self):
            return str(tmp_path)

    loader = DataLoader(torch.randn(4, 3), batch_size=2)
    _trainer(tmp_path, max_steps=1, callbacks=[VideoSampleLogger(num_samples=2, fps=5)], logger=_FakeWandb(),
             limit_train_batches=1, limit_val_batches=1).fit(_Sampler(), loader, loader)
    ((metrics, step),) = [entry for entry in logged if "samples/video" in entry[0]]
    videos = metrics["samples/video"]
    assert step == 1 and len(videos) == 2
    assert all(v.frames == 5 and v.size == (7, 6) and v.fps == 5 and v.format == "gif" for v in videos)
