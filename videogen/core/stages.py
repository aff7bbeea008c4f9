"""The stage bases: :class:`AutoencoderGANStage` (autoencoders trained with a GAN) and
:class:`DiffusionStage` (diffusion models on the latents of frozen earlier stages).

LaMD's MCD-VAE (``videogen.lamd.MCDVAEModule``) and LVDM's 3D autoencoder
(``videogen.lvdm.VideoAutoencoder3DModule``) train the same way, VQGAN/LDM style::

    rec  = ReconstructionLoss(x_hat, x)            pixel L1 or L2 (+ lpips_weight * LPIPS)
    nll  = rec                                     (LVDM: rec / exp(s) + s with a learned log-variance s)
    kl   = KL(q(z|x) || N(0, I)) per latent element (DiagonalGaussian, averaged over elements and batch)
    L_G  = nll + kl_weight * kl [+ disc_weight * lambda_adapt * L_adv  from generator step disc_start on]
    L_D  = hinge or vanilla loss of the discriminator on real x and detached x_hat

with two Adam optimisers under manual optimisation: a generator (autoencoder) step, then a discriminator
step.  This class owns that loop, so both models share one gradient clipping (``grad_clip``), one NaN
policy, the ``disc_start`` counter (the ``gen_steps`` buffer, kept across resumes), VQGAN's adaptive
weight, the optimisers and the logged names.  A subclass says only what differs: how to run its
autoencoder (:meth:`autoencode`), its decoder's last weight, what the discriminator sees, an optional
``nll`` of the reconstruction term and extra parameters of the generator optimiser.

NaN policy (the stricter of what the two modules did): the generator step checks ``rec_loss``, ``kl``,
``g_loss`` and the total ``loss``; a non-finite one raises (``nan_policy="raise"``) or skips the whole
batch, discriminator step included (``"skip"``; nothing is logged for it).  The discriminator step checks
``d_loss`` the same way.

The diffusion stages (LaMD's ``DMGModule``, CMD's ``CMDContentModule`` / ``CMDMotionModule``, LVDM's
``LVDMShortModule``, ``LVDMLongModule``, ``LVDMTextToVideoModule``) share one step::

    x0, cond = encode_batch(batch)          frozen stages under no_grad; CFG condition dropout in training
    loss     = diffusion.training_loss(network, x0, **cond)      (L_simple: eps / v / x0 target, L1 or L2)

with the NaN guard, ``train/loss`` / ``val/loss`` and, in validation, a generator seeded from the batch
index (the same timesteps and noise on every evaluation of the same weights, so ``val/loss`` compares
across epochs).  :class:`DiffusionStage` owns that loop, the frozen stages, ``GaussianDiffusion`` from
its config and the inference pipeline built from the stage's networks (``sample_videos``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from videogen.core.diffusion import GaussianDiffusion
from videogen.core.losses import (
    DiagonalGaussian,
    ReconstructionLoss,
    adaptive_weight,
    generator_adv_loss,
    hinge_d_loss,
    vanilla_d_loss,
)
from videogen.core.metrics.psnr_ssim import psnr_per_video
from videogen.core.training import TrainingModule

__all__ = ["AutoencoderGANStage", "D_LOSSES", "DiffusionStage", "drop_captions", "drop_labels", "drop_mask",
           "zero_dropped"]

D_LOSSES = {"vanilla": vanilla_d_loss, "hinge": hinge_d_loss}


class AutoencoderGANStage(TrainingModule):
    """Base LightningModule of a VAE trained with reconstruction + KL + adaptive-weight GAN losses.

    Subclasses build their networks (in the order that fixes their seeded initialisation) and pass them
    here; they call ``save_hyperparameters`` themselves after ``super().__init__``.

    Args:
        autoencoder: the network trained by the generator optimiser (registered as ``autoencoder``).
        reconstruction: the pixel (+ LPIPS) term, a :class:`ReconstructionLoss`.
        discriminator: the discriminator, or ``None`` for no GAN (one optimiser).
        kl_weight: weight of the per-element KL.
        disc_weight: factor on VQGAN's adaptive weight; ``disc_start``: generator steps before the GAN.
        disc_loss: ``"vanilla"`` (log-loss) or ``"hinge"``, for both the discriminator and the generator.
        adaptive_max_weight: clamp of the adaptive weight.
        lr, betas, scale_lr: Adam of both optimisers; ``scale_lr`` applies the LDM scaling rule.
        grad_clip: max gradient norm of both optimisers (``None``/0: no clipping).
        nan_policy: ``"raise"`` or ``"skip"`` (see the module docstring).
        compile, optimizer: ``TrainingModule``'s cluster switches; ``optimizer`` applies to both optimisers
            (each keeps ``lr``, ``betas`` and ``scale_lr``).
        accumulate: batches whose gradients each optimiser step sums (the official LVDM autoencoder's
            ``accumulate_grad_batches: 2``). Lightning's ``Trainer(accumulate_grad_batches)`` does not apply
            to these manually optimised stages (it refuses them), so the stage accumulates itself: each
            loss is divided by ``accumulate``, both optimisers step every ``accumulate`` batches, and
            ``disc_start`` / ``scale_lr`` count optimiser steps / the accumulated batch.  A window left
            open at the end of an epoch continues into the next; a checkpoint taken inside a window does
            not hold its partial gradients (save every N steps, which are window ends).
    """

    def __init__(self, autoencoder: nn.Module, reconstruction: ReconstructionLoss,
                 discriminator: nn.Module | None, *, kl_weight: float, disc_weight: float, disc_start: int,
                 disc_loss: str, adaptive_max_weight: float = 1e4, lr: float, betas: tuple[float, float],
                 scale_lr: bool = False, grad_clip: float | None = None, nan_policy: str = "raise",
                 compile: bool | str | dict[str, Any] | None = False,
                 optimizer: str | dict[str, Any] | None = None, accumulate: int = 1) -> None:
        super().__init__(nan_policy=nan_policy, compile=compile, optimizer=optimizer)
        if not isinstance(accumulate, int) or accumulate < 1:
            raise ValueError(f"accumulate must be an integer >= 1, got {accumulate!r}")
        self.accumulate = accumulate
        if disc_loss not in D_LOSSES:
            raise ValueError(f"disc_loss must be one of {sorted(D_LOSSES)}, got {disc_loss!r}")
        self.autoencoder = autoencoder
        self.reconstruction = reconstruction
        self.discriminator = discriminator if disc_weight > 0 else None
        # generator steps taken (persisted, so that disc_start survives resuming)
        self.register_buffer("gen_steps", torch.zeros((), dtype=torch.long))
        # batches taken into the current accumulation window (persisted with the phase of the window)
        self.register_buffer("micro_steps", torch.zeros((), dtype=torch.long))
        self.kl_weight, self.disc_weight, self.disc_start = kl_weight, disc_weight, disc_start
        self.disc_loss, self.adaptive_max_weight = disc_loss, adaptive_max_weight
        self.lr, self.betas, self.scale_lr, self.grad_clip = lr, tuple(betas), scale_lr, grad_clip
        self.automatic_optimization = False

    # ---- what a subclass provides -------------------------------------------------------------
    def autoencode(self, video: torch.Tensor, sample: bool) -> tuple[torch.Tensor, DiagonalGaussian]:
        """``video (B, C, T, H, W)`` -> ``(reconstruction (B, C, T, H, W), posterior q(z|x))``; ``sample``:
        decode a posterior sample (training) or the mean (validation)."""
        raise NotImplementedError

    @property
    def last_layer_weight(self) -> torch.Tensor:
        """The decoder's last weight (VQGAN's adaptive weight compares gradients there)."""
        raise NotImplementedError

    def disc_input(self, video: torch.Tensor) -> torch.Tensor:
        """What the discriminator reads of a video ``(B, C, T, H, W)``; default the video itself."""
        return video

    def nll(self, rec: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The likelihood term built on the reconstruction loss ``rec`` (scalar) and its extra logs;
        default ``rec`` itself."""
        return rec, {}

    def generator_parameters(self) -> Iterable[nn.Parameter]:
        """Parameters of the generator optimiser; default the autoencoder's."""
        return self.autoencoder.parameters()

    def trained_networks(self) -> dict[str, nn.Module]:
        """The autoencoder and (with the GAN) the discriminator."""
        nets = {"autoencoder": self.autoencoder}
        if self.discriminator is not None:
            nets["discriminator"] = self.discriminator
        return nets

    # ---- losses -------------------------------------------------------------------------------
    def reconstruction_loss(self, recon: torch.Tensor, video: torch.Tensor
                            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(rec scalar, detached terms)`` of ``recon`` against ``video`` (both ``(B, C, T, H, W)``)."""
        return self.reconstruction(recon, video)

    @staticmethod
    def kl_per_element(posterior: DiagonalGaussian) -> torch.Tensor:
        """KL per latent element: the ``(B,)`` sums / elements per sample, averaged over the batch."""
        return posterior.kl().mean() / posterior.mean[0].numel()

    def gan_active(self) -> bool:
        """True once ``gen_steps`` reached ``disc_start`` (and there is a discriminator)."""
        return self.discriminator is not None and int(self.gen_steps) >= self.disc_start

    def generator_loss(self, video: torch.Tensor, gan: bool, sample: bool = True
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """``(loss, logs, recon)`` of the autoencoder on ``video``; ``gan`` adds the weighted adversarial
        term.  ``logs`` holds the scalar terms (``rec_loss``, ``kl``, ``g_loss`` ... ) for the NaN guard."""
        recon, posterior = self.autoencode(video, sample=sample)
        rec, logs = self.reconstruction_loss(recon, video)
        nll, nll_logs = self.nll(rec)
        kl = self.kl_per_element(posterior)
        loss = nll + self.kl_weight * kl
        if gan:
            g_loss = generator_adv_loss(self.discriminator(self.disc_input(recon)), self.disc_loss)
            weight = self.disc_weight * adaptive_weight(nll, g_loss, self.last_layer_weight,
                                                        self.adaptive_max_weight)
            loss = loss + weight * g_loss
            logs.update(g_loss=g_loss.detach(), disc_adaptive_weight=weight)
        logs.update(rec_loss=rec.detach(), kl=kl.detach(), **nll_logs)
        return loss, logs, recon

    # ---- training -----------------------------------------------------------------------------
    def _clip(self, opt) -> None:
        if self.grad_clip:
            self.clip_gradients(opt, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        video = batch["video"]  # (B, C, T, H, W)
        optimizers = self.optimizers()
        opt_g = optimizers[0] if isinstance(optimizers, list) else optimizers
        gan = self.gan_active()

        # generator (autoencoder) step
        if self.discriminator is not None:
            self.toggle_optimizer(opt_g)
        loss, logs, recon = self.generator_loss(video, gan)
        checked = {k: logs[k] for k in ("rec_loss", "kl", "g_loss") if k in logs}
        if not self.finite_or_skip(**checked, loss=loss):
            if self.discriminator is not None:
                self.untoggle_optimizer(opt_g)
            return None
        last = (int(self.micro_steps) + 1) % self.accumulate == 0  # this batch closes the window
        self.manual_backward(loss / self.accumulate)
        if last:
            self._clip(opt_g)
            opt_g.step()
            opt_g.zero_grad(set_to_none=True)
        if self.discriminator is not None:
            self.untoggle_optimizer(opt_g)

        # discriminator step
        if gan:
            opt_d = optimizers[1]
            self.toggle_optimizer(opt_d)
            logits_real = self.discriminator(self.disc_input(video))
            logits_fake = self.discriminator(self.disc_input(recon.detach()))
            d_loss = D_LOSSES[self.disc_loss](logits_real, logits_fake)
            if self.finite_or_skip(d_loss=d_loss):
                self.manual_backward(d_loss / self.accumulate)
            if last:
                self._clip(opt_d)
                opt_d.step()
                opt_d.zero_grad(set_to_none=True)
            self.untoggle_optimizer(opt_d)
            logs.update(d_loss=d_loss.detach(), logits_real=logits_real.detach().mean(),
                        logits_fake=logits_fake.detach().mean())

        self.micro_steps += 1
        if last:
            self.gen_steps += 1
        logs.update(loss=loss.detach(), gen_steps=self.gen_steps.float())
        # sync_dist: under DDP the logged values are averages over ranks, not rank 0's alone
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, prog_bar=False, batch_size=video.shape[0],
                      sync_dist=True)
        self.log("train/rec_loss_bar", logs["rec_loss"], prog_bar=True, logger=False,
                 batch_size=video.shape[0])
        return loss.detach()

    # ---- validation ---------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        video = batch["video"]  # (B, C, T, H, W)
        recon, posterior = self.autoencode(video, sample=False)
        rec, _ = self.reconstruction_loss(recon, video)
        psnr = psnr_per_video(recon.clamp(-1, 1), video).mean()
        kl = self.kl_per_element(posterior)
        self.log_dict({"val/psnr": psnr.float(), "val/rec_loss": rec, "val/kl": kl},
                      prog_bar=True, sync_dist=True, batch_size=video.shape[0])

    def configure_optimizers(self):
        """Adam with ``betas`` for the generator and the discriminator (or the recipe's ``optimizer``)."""
        lr = self.scaled_lr(self.lr, self.scale_lr)
        opt_g = self.make_optimizer(self.generator_parameters(), lr, "adam", betas=self.betas)
        if self.discriminator is None:
            return opt_g
        return [opt_g, self.make_optimizer(self.discriminator.parameters(), lr, "adam", betas=self.betas)]

    @torch.no_grad()
    def sample_videos(self, batch: dict[str, Any], num: int) -> torch.Tensor:
        """Reconstructions (posterior means) of the first ``num`` batch videos, ``(num, C, T, H, W)``."""
        return self.autoencode(batch["video"][:num], sample=False)[0].clamp(-1, 1)


# ---- condition dropout (classifier-free guidance training) -------------------------------------------------
def drop_mask(batch_size: int, p: float, generator: torch.Generator | None = None,
              device: torch.device | str | None = None) -> torch.Tensor:
    """``(B,)`` bool, True with probability ``p`` per sample: ``rand(B) < p``, one uniform draw per sample
    on ``device`` (CPU when None) from ``generator`` (the global stream when None).

    The one Bernoulli draw of every stage: the samples whose condition is dropped for classifier-free
    guidance (labels -> null class, captions -> "", features / masks zeroed), or, for LVDM's prediction
    and interpolation models, the samples that get their given frames (``cond_prob``).  Where and on which
    device it draws is part of a seeded run's numerics, so callers keep their place in the stream.
    """
    return torch.rand(batch_size, generator=generator, device=device) < p


def drop_labels(label: torch.Tensor, drop: torch.Tensor, null_label: int) -> torch.Tensor:
    """``label (B,)`` with the dropped samples set to the null class (the CFG unconditional class)."""
    return torch.where(drop, torch.full_like(label, null_label), label)


def zero_dropped(x: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """``x (B, ...)`` with the dropped samples zeroed (a pooled text feature, a content frame, a mask)."""
    keep = (~drop.to(x.device)).view(-1, *([1] * (x.ndim - 1)))
    return x & keep if x.dtype == torch.bool else x * keep.to(x.dtype)


def drop_conditions(raw: dict[str, Any], drop: torch.Tensor | None, null_label: int | None,
                    zero: Sequence[str] = ()) -> dict[str, Any]:
    """``raw`` conditions with, for the dropped samples (``drop (B,)``), ``"label"`` set to ``null_label``
    and each ``zero`` entry (a pooled text feature, a token mask) zeroed; ``None`` entries stay ``None``."""
    if drop is None:
        return raw
    cond = dict(raw)
    if cond.get("label") is not None:
        cond["label"] = drop_labels(cond["label"], drop, null_label)
    for key in zero:
        if cond.get(key) is not None:
            cond[key] = zero_dropped(cond[key], drop)
    return cond


def drop_captions(captions: Sequence[str], drop: torch.Tensor) -> list[str]:
    """The captions with the dropped ones replaced by ``""`` (the empty prompt of SD-style CFG)."""
    return ["" if d else c for c, d in zip(captions, drop.tolist())]


class DiffusionStage(TrainingModule):
    """Base LightningModule of a diffusion model trained on the encodings of frozen earlier stages.

    A subclass builds its networks, assigns them, lists the frozen ones in ``frozen`` and calls
    :meth:`freeze_stages` (``TrainingModule``), and says:

    * ``network_name``: the attribute of the trained network (``"dmg"``, ``"denoiser"``, ``"unet"``: the
      ``state_dict`` prefixes of the checkpoints stay); :attr:`network` returns it.
    * :meth:`encode`: ``batch -> (x0, raw conditions)``; run under ``torch.no_grad()``.
    * :meth:`conditions`: raw conditions -> the network's kwargs, with the dropped samples' conditions
      removed (default: the raw conditions, for an unconditional model).
    * optionally :meth:`diffusion_loss` (default ``diffusion.training_loss(network, x0, **cond)``) and
      :meth:`sample_inputs` (what ``sample_videos`` passes to the pipeline's ``generate``).

    Args:
        diffusion: ``GaussianDiffusion`` kwargs over the class's ``default_diffusion``.
        cond_drop_prob: probability that a training sample's condition is dropped (classifier-free
            guidance); ``None`` for a stage without condition dropout (no random draw is made).
        nan_policy: ``"raise"`` or ``"skip"`` (``TrainingModule.finite_or_skip``).
        compile, optimizer: ``TrainingModule``'s cluster switches (``compile`` compiles :attr:`network`).
    """

    #: the trained network's attribute
    network_name: str = "network"
    #: ``GaussianDiffusion`` kwargs the ``diffusion`` argument updates ({} = its defaults: linear, eps, L2)
    default_diffusion: dict[str, Any] = {}
    #: draw the condition-dropout mask on the module's device (False: on the CPU, as LVDM's text-to-video)
    drop_on_device: bool = True
    #: ``encode`` samples the posterior of the frozen stage in training (validation takes the mean)
    sample_posterior: bool = True

    def __init__(self, diffusion: dict[str, Any] | None = None, cond_drop_prob: float | None = None,
                 nan_policy: str = "raise", compile: bool | str | dict[str, Any] | None = False,
                 optimizer: str | dict[str, Any] | None = None) -> None:
        super().__init__(nan_policy=nan_policy, compile=compile, optimizer=optimizer)
        if cond_drop_prob is not None and not 0.0 <= cond_drop_prob < 1.0:
            raise ValueError(f"cond_drop_prob must lie in [0, 1), got {cond_drop_prob}")
        self.cond_drop_prob = cond_drop_prob
        self.diffusion_config = {**self.default_diffusion, **(diffusion or {})}
        self.diffusion = GaussianDiffusion(**self.diffusion_config)

    @property
    def network(self) -> nn.Module:
        """The trained network (``self.<network_name>``)."""
        return getattr(self, self.network_name)

    def trained_networks(self) -> dict[str, nn.Module]:
        """The trained network under its attribute name (frozen stages are never compiled)."""
        return {self.network_name: self.network}

    # ---- what a subclass provides -------------------------------------------------------------
    def encode(self, batch: dict[str, Any], sample: bool) -> tuple[torch.Tensor, dict[str, Any]]:
        """``batch`` -> ``(x0 (B, ...), raw conditions)``: the diffusion target encoded by the frozen stages
        (``sample``: a posterior sample, else its mean) and the conditions before dropout."""
        raise NotImplementedError

    def conditions(self, raw: dict[str, Any], drop: torch.Tensor | None) -> dict[str, Any]:
        """The network's condition kwargs from ``raw``; ``drop (B,)`` bool marks the samples whose condition
        is dropped (``None``: keep all)."""
        return raw

    def diffusion_loss(self, x0: torch.Tensor, cond: dict[str, Any],
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """The scalar loss of ``x0`` (timesteps and noise from ``generator``, else the global stream)."""
        return self.diffusion.training_loss(self.network, x0, generator=generator, **cond)

    # ---- data -> x0 + conditions --------------------------------------------------------------
    def condition_drop(self, batch_size: int) -> torch.Tensor:
        """The ``(B,)`` condition-dropout mask of a training batch (:func:`drop_mask`)."""
        return drop_mask(batch_size, self.cond_drop_prob, device=self.device if self.drop_on_device else None)

    @torch.no_grad()
    def encode_batch(self, batch: dict[str, Any], drop: bool, sample: bool | None = None
                     ) -> tuple[torch.Tensor, dict[str, Any]]:
        """``(x0, condition kwargs)`` of a batch; ``drop``: apply the condition dropout (training).

        ``sample`` (default: ``sample_posterior`` in training batches, the mean otherwise) picks a
        posterior sample of the frozen stage or its mean.  The frozen stages run without gradients.
        """
        sample = (drop and self.sample_posterior) if sample is None else sample
        x0, raw = self.encode(batch, sample)
        mask = self.condition_drop(x0.shape[0]) if drop and self.cond_drop_prob is not None else None
        return x0, self.conditions(raw, mask)

    # ---- Lightning hooks ----------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        x0, cond = self.encode_batch(batch, drop=True)
        loss = self.diffusion_loss(x0, cond)
        if not self.finite_or_skip(loss=loss):
            return None
        self.log("train/loss", loss, prog_bar=True, batch_size=x0.shape[0], sync_dist=True)  # mean over ranks
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        x0, cond = self.encode_batch(batch, drop=False, sample=False)
        # timesteps and noise from a generator seeded with the batch index: the same every evaluation
        gen = torch.Generator(device=x0.device).manual_seed(batch_idx)
        loss = self.diffusion_loss(x0, cond, generator=gen)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=x0.shape[0])
        return loss

    # ---- inference ----------------------------------------------------------------------------
    def pipeline(self, **overrides: Any):
        """The inference object of ``pipeline_name`` sharing this stage's networks: its constructor gets
        ``pipeline_parts()`` by component name, ``pipeline_settings()`` and ``overrides``.  The class comes
        from the persistence registry, so the training module does not import the pipeline's module."""
        from videogen.core.persistence import resolve_class
        from videogen.core.pipeline import VideoPipeline

        if self.pipeline_name is None:
            raise NotImplementedError(f"{type(self).__name__} names no pipeline (pipeline_name)")
        cls = resolve_class(self.pipeline_name, VideoPipeline, "pipeline class")
        parts = {name: net for name, (net, _) in self.pipeline_parts().items() if net is not None}
        return cls(**parts, **{**self.pipeline_settings(), **overrides})

    def sample_inputs(self, batch: dict[str, Any], num: int) -> dict[str, Any]:
        """The ``generate`` keywords of ``sample_videos`` for the first ``num`` samples of ``batch``."""
        raise NotImplementedError(f"{type(self).__name__} does not say how to sample from a batch")

    @torch.no_grad()
    def sample_videos(self, batch: dict[str, Any], num: int) -> torch.Tensor:
        """Videos ``(num, C, T, H, W)`` in [-1, 1] for ``VideoSampleLogger``: the stage's pipeline
        generates from :meth:`sample_inputs` with a fixed CPU generator (seed 0)."""
        gen = torch.Generator(device="cpu").manual_seed(0)
        return self.pipeline().generate(**self.sample_inputs(batch, num), generator=gen, progress=False)
