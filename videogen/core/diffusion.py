"""Gaussian diffusion: noise schedules, training targets and loss, one sampling loop, classifier-free
guidance.

Notation (DDPM, Ho et al. 2020; v from Salimans & Ho 2022), with alpha_bar_t = prod_{s<=t} (1 - beta_s):

    x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps
    v   = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x0

The training side (forward process, targets, conversions, loss) is computed here from float64 tables, gathered
per sample and cast to the sample's dtype on the sample's device, so any rank works: images (B, C, H, W),
videos (B, C, T, H, W), or anything batch-first. The sampling side hands the reverse update to a diffusers
scheduler built from exactly our betas, so DDPM, DDIM, DPM-Solver++ and any other discrete-beta diffusers
scheduler run behind one loop (`GaussianDiffusion.sample`).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

SCHEDULES = ("linear", "scaled_linear", "cosine")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
LOSS_TYPES = ("l1", "l2")
# Short sampler names -> diffusers scheduler classes; any other diffusers scheduler class name works too.
SAMPLER_ALIASES = {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler", "dpm++": "DPMSolverMultistepScheduler",
                   "unipc": "UniPCMultistepScheduler"}
# linear: DDPM (Ho et al. 2020). scaled_linear: LDM / Stable Diffusion (LVDM's unconditional models use
# 0.0015..0.0155, passed explicitly).
_DEFAULT_BETA_RANGE = {"linear": (1e-4, 0.02), "scaled_linear": (0.00085, 0.012)}

ModelFn = Callable[..., torch.Tensor]


def make_betas(
    schedule: str, num_train_timesteps: int = 1000, beta_start: float | None = None,
               beta_end: float | None = None
) -> torch.Tensor:
    """Noise schedule beta_1..beta_T as a float64 tensor of shape (num_train_timesteps,).

    - "linear": evenly spaced betas (DDPM), default 1e-4..0.02.
    - "scaled_linear": evenly spaced sqrt(beta), squared (LDM), default 0.00085..0.012.
    - "cosine": alpha_bar(s) = cos^2((s + 0.008) / 1.008 * pi / 2) (Nichol & Dhariwal 2021), betas capped at
      0.999 (diffusers calls it "squaredcos_cap_v2"); takes no beta_start / beta_end.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown beta schedule {schedule!r}; choose one of {SCHEDULES}")
    if int(num_train_timesteps) != num_train_timesteps or num_train_timesteps < 1:
        raise ValueError(f"num_train_timesteps must be a positive integer, got {num_train_timesteps}")
    if schedule == "cosine":
        if beta_start is not None or beta_end is not None:
            raise ValueError("the cosine schedule takes no beta_start / beta_end")
        steps = torch.arange(num_train_timesteps + 1, dtype=torch.float64) / num_train_timesteps
        alpha_bar = torch.cos((steps + 0.008) / 1.008 * math.pi / 2) ** 2  # (T+1,)
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    start, end = _DEFAULT_BETA_RANGE[schedule]
    start = start if beta_start is None else float(beta_start)
    end = end if beta_end is None else float(beta_end)
    if not 0 < start <= end < 1:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got beta_start={start}, beta_end={end}")
    if schedule == "linear":
        return torch.linspace(start, end, num_train_timesteps, dtype=torch.float64)
    return torch.linspace(start**0.5, end**0.5, num_train_timesteps, dtype=torch.float64) ** 2


def classifier_free_guidance(out_cond: torch.Tensor, out_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022) on every channel: out_u + scale * (out_c - out_u).

    scale = 1 gives the conditional output. LVDM writes it as eps_c + w (eps_c - eps_u), i.e. scale = 1 + w.
    """
    if out_cond.shape != out_uncond.shape:
        raise ValueError(f"cond/uncond outputs differ in shape: {tuple(out_cond.shape)} vs "
                         f"{tuple(out_uncond.shape)}")
    return out_uncond + scale * (out_cond - out_uncond)


class GaussianDiffusion(nn.Module):
    """Discrete-time Gaussian diffusion with T training steps; holds no learnable parameters.

    Buffers `betas` and `alphas_cumprod` are float64 and non-persistent (rebuilt from the config, never in
    checkpoints); a dtype cast of the module (`.half()`, `.to(torch.bfloat16)`, Lightning "bf16-true") leaves
    them float64, since bf16 would round alpha_bar at small t to 1.
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "linear",
        beta_start: float | None = None,
        beta_end: float | None = None,
        prediction_type: str = "epsilon",
        loss_type: str = "l2",
        snr_gamma: float | None = None,
    ):
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction_type {prediction_type!r}; choose one of {PREDICTION_TYPES}")
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"unknown loss_type {loss_type!r}; choose one of {LOSS_TYPES}")
        if snr_gamma is not None and not snr_gamma > 0:
            raise ValueError(f"snr_gamma must be > 0 (or None for no weighting), got {snr_gamma}")
        self.num_train_timesteps = int(num_train_timesteps)
        self.beta_schedule, self.beta_start, self.beta_end = beta_schedule, beta_start, beta_end
        self.prediction_type, self.loss_type, self.snr_gamma = prediction_type, loss_type, snr_gamma
        betas = make_betas(beta_schedule, num_train_timesteps, beta_start, beta_end)
        self.register_buffer("betas", betas, persistent=False)
        self.register_buffer("alphas_cumprod", torch.cumprod(1 - betas, dim=0), persistent=False)

    def extra_repr(self) -> str:
        return (f"T={self.num_train_timesteps}, schedule={self.beta_schedule}, prediction_type="
                f"{self.prediction_type}, loss_type={self.loss_type}, snr_gamma={self.snr_gamma}")

    def _apply(self, fn, recurse=True):
        # Module-wide dtype casts must not reach the tables: rebuild them in float64 on the new device.
        super()._apply(fn, recurse)
        if self.betas.dtype != torch.float64:
            betas = make_betas(self.beta_schedule, self.num_train_timesteps, self.beta_start, self.beta_end)
            self.betas = betas.to(self.betas.device)
            self.alphas_cumprod = torch.cumprod(1 - self.betas, dim=0)
        return self

    # ----------------------------------------------------------------------------------------- forward
    # process
    def _alpha_sigma(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t) per sample, shaped (B, 1, ..., 1) in like's
        dtype/device."""
        if not torch.is_tensor(t) or t.ndim != 1 or t.shape[0] != like.shape[0] or t.is_floating_point():
            raise ValueError(f"t must be an integer tensor of shape (B,) = ({like.shape[0]},), got "
                             f"{tuple(t.shape) if torch.is_tensor(t) else type(t).__name__}")
        alpha_bar = self.alphas_cumprod[t.to(self.alphas_cumprod.device)]  # (B,) float64
        shape = (-1,) + (1,) * (like.ndim - 1)
        alpha = alpha_bar.sqrt().to(like.device, like.dtype).view(shape)
        sigma = (1 - alpha_bar).sqrt().to(like.device, like.dtype).view(shape)
        return alpha, sigma

    def sample_timesteps(self, batch_size: int, device=None, generator: torch.Generator | None = None):
        """Training timesteps drawn uniformly from {0, ..., T-1}: LongTensor (B,) on `device`."""
        gen_device = generator.device if generator is not None else device
        t = torch.randint(0, self.num_train_timesteps, (batch_size,), generator=generator, device=gen_device)
        return t.to(device)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q(x_t | x0): sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise, per-sample t (B,)."""
        if noise.shape != x0.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} must equal x0 shape {tuple(x0.shape)}")
        alpha, sigma = self._alpha_sigma(t, x0)
        return alpha * x0 + sigma * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network regresses: eps, v or x0 according to `prediction_type`."""
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "sample":
            return x0
        alpha, sigma = self._alpha_sigma(t, x0)
        return alpha * noise - sigma * x0

    def _x0_and_eps(self, x_t, t, model_output) -> tuple[torch.Tensor, torch.Tensor]:
        alpha, sigma = self._alpha_sigma(t, x_t)
        if self.prediction_type == "epsilon":
            return (x_t - sigma * model_output) / alpha, model_output
        if self.prediction_type == "sample":
            return model_output, (x_t - alpha * model_output) / sigma
        return alpha * x_t - sigma * model_output, sigma * x_t + alpha * model_output  # from v

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, model_output: torch.Tensor) -> torch.Tensor:
        """x0 implied by a model output of type `prediction_type` at (x_t, t)."""
        return self._x0_and_eps(x_t, t, model_output)[0]

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, model_output: torch.Tensor) -> torch.Tensor:
        """eps implied by a model output of type `prediction_type` at (x_t, t)."""
        return self._x0_and_eps(x_t, t, model_output)[1]

    # ---------------------------------------------------------------------------------------------- training
    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """Per-sample loss weight (B,) float64: ones, or Min-SNR-gamma (Hang et al. 2023) when snr_gamma is
        set.

        With SNR_t = alpha_bar_t / (1 - alpha_bar_t), weighting the x0-error by min(SNR_t, gamma) expressed in
        the network's own target gives min(SNR, gamma) / SNR for eps, min(SNR, gamma) / (SNR + 1) for v and
        min(SNR, gamma) for x0.
        """
        alpha_bar = self.alphas_cumprod[t.to(self.alphas_cumprod.device)]
        if self.snr_gamma is None:
            return torch.ones_like(alpha_bar)
        snr = alpha_bar / (1 - alpha_bar)
        clipped = snr.clamp(max=self.snr_gamma)
        return {"epsilon": clipped / snr, "v_prediction": clipped / (snr + 1), "sample": clipped}[
            self.prediction_type]

    def training_loss(
        self,
        model_fn: ModelFn,
        x0: torch.Tensor,
        *,
        noise: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        **cond: Any,
    ) -> torch.Tensor:
        """Denoising loss: mean over elements (L1 or L2) of model_fn(x_t, t, **cond) - target, per-sample
        Min-SNR weighted when snr_gamma is set, averaged over the batch. Scalar float32.

        noise and t default to N(0, I) and uniform timesteps drawn with `generator`.
        """
        batch = x0.shape[0]
        if noise is None:
            noise = _randn(x0.shape, generator, x0.device, x0.dtype)
        if t is None:
            t = self.sample_timesteps(batch, x0.device, generator)
        elif torch.is_tensor(t) and t.numel() and not (0 <= int(t.min()) and int(t.max())
                                                       < self.num_train_timesteps):
            raise ValueError(f"t must lie in [0, {self.num_train_timesteps}), got {t.tolist()}")
        x_t = self.add_noise(x0, noise, t)
        out = model_fn(x_t, t, **cond)
        if out.shape != x0.shape:
            raise ValueError(f"model output shape {tuple(out.shape)} must equal x0 shape {tuple(x0.shape)}")
        diff = out.float() - self.target(x0, noise, t).float()
        per_element = diff.abs() if self.loss_type == "l1" else diff.square()
        per_sample = per_element.reshape(batch, -1).mean(dim=1)  # (B,)
        weight = self.loss_weight(t).to(per_sample.device, per_sample.dtype)
        return (weight * per_sample).mean()

    # ---------------------------------------------------------------------------------------------- sampling
    def make_scheduler(self, sampler: str = "ddim", **overrides: Any):
        """A fresh diffusers scheduler with exactly our betas (`trained_betas`) and `prediction_type`.

        sampler: "ddpm" (DDPMScheduler), "ddim" (DDIMScheduler), "dpm++" (DPMSolverMultistepScheduler,
        algorithm_type "dpmsolver++", 2nd order), "unipc" (UniPCMultistepScheduler, bh2, 2nd order) or any
        diffusers scheduler class name that takes `trained_betas`, e.g. "EulerDiscreteScheduler". `overrides`
        go to the scheduler's constructor and win over the defaults below.

        Defaults: clip_sample=False and thresholding=False (x0 is not confined to [-1, 1] in latent space),
        and timestep_spacing="trailing" with set_alpha_to_one=True, steps_offset=0. We pick trailing over the
        LDM convention (DDIM "leading" spacing, steps_offset=1, set_alpha_to_one=False) because (i) the first
        step is at t = T-1, the level whose marginal is closest to the N(0, I) we start from (Lin et al. 2024
        show that leading spacing starts lower, at a level with signal left, which matters for scaled_linear
        schedules), and (ii) the last step lands on alpha_bar = 1, returning the model's x0 estimate instead
        of a sample still carrying sqrt(1 - alpha_bar_0) noise. With T a multiple of the step count (1000 with
        50/100/200/250 steps) the steps are exactly uniform; otherwise diffusers' DDIM/DDPM step to
        t - T // num_steps, slightly off the next grid point. For LDM-identical DDIM pass
        timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False.
        """
        cls = _scheduler_class(sampler)
        params = inspect.signature(cls.__init__).parameters
        if "trained_betas" not in params:
            raise ValueError(f"{cls.__name__} takes no trained_betas, so it cannot run our beta schedule")
        unknown = sorted(set(overrides) - set(params))
        if unknown:
            raise ValueError(f"{cls.__name__} has no option(s) {unknown}")
        config = dict(
            num_train_timesteps=self.num_train_timesteps,
            trained_betas=self.betas.cpu().tolist(),
            prediction_type=self.prediction_type,
            clip_sample=False,
            thresholding=False,
            timestep_spacing="trailing",
            set_alpha_to_one=True,
            steps_offset=0,
            algorithm_type="dpmsolver++",
        )
        config = {k: v for k, v in config.items() if k in params}
        return cls(**{**config, **overrides})

    @torch.no_grad()
    def sample(
        self,
        model_fn: ModelFn,
        shape: tuple[int, ...],
        *,
        cond: Mapping[str, torch.Tensor | None] | None = None,
        uncond: Mapping[str, torch.Tensor | None] | None = None,
        guidance_scale: float = 1.0,
        sampler: Any = "ddim",
        num_steps: int = 50,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        x_T: torch.Tensor | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        progress: bool = True,
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """Run the reverse process from noise to a sample of `shape` ((B, C, H, W) or (B, C, T, H, W)).

        model_fn(x_t, t, **cond) gets t as a (B,) long tensor (schedulers with fractional timesteps, e.g.
        Karras sigmas, are rounded). With `uncond` and guidance_scale != 1 the conditional and unconditional
        inputs run as ONE batch of 2B (cond and uncond values concatenated along the batch; a None value must
        be None in both) and every channel is guided (`classifier_free_guidance`).

        sampler: a name for `make_scheduler`, or a diffusers scheduler instance (e.g. made with overrides).
        eta: DDIM stochasticity (0 = deterministic DDIM, 1 = DDPM-like); only for schedulers whose step takes
        it. generator draws x_T (unless given; x_T is unit-variance noise, scaled by init_noise_sigma) and the
        noise of stochastic steps. dtype is what model_fn sees and what is returned; the running sample is
        kept in at least float32. callback(step_index, t, x_t) is called after every step.
        """
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (4, 5):
            raise ValueError(f"shape must be (B, C, H, W) or (B, C, T, H, W), got {shape}")
        if not 1 <= num_steps <= self.num_train_timesteps:
            raise ValueError(f"num_steps must be in [1, {self.num_train_timesteps}], got {num_steps}")
        if x_T is not None and tuple(x_T.shape) != shape:
            raise ValueError(f"x_T shape {tuple(x_T.shape)} must equal shape {shape}")
        if guidance_scale != 1.0 and uncond is None:
            raise ValueError(f"guidance_scale={guidance_scale} needs `uncond` (the unconditional inputs)")
        cond = dict(cond or {})
        _check_cond(cond, uncond, shape[0])
        guided = uncond is not None and guidance_scale != 1.0
        if guided:  # one batch of 2B: [cond; uncond]
            cond = {k: None if v is None else torch.cat([v, uncond[k].to(v.device)]) for k, v in cond.items()}
        scheduler = self.make_scheduler(sampler) if isinstance(sampler, str) else sampler
        if scheduler.config.num_train_timesteps != self.num_train_timesteps:
            raise ValueError(f"scheduler has {scheduler.config.num_train_timesteps} training steps, "
                             f"this diffusion {self.num_train_timesteps}")
        step_kwargs = _step_kwargs(scheduler, eta, generator)

        device = torch.device(device) if device is not None else _infer_device(x_T, cond)
        state_dtype = torch.promote_types(dtype, torch.float32)
        scheduler.set_timesteps(num_steps, device=device)
        x = x_T.to(device, state_dtype) if x_T is not None else _randn(shape, generator, device, state_dtype)
        x = x * scheduler.init_noise_sigma
        model_batch = shape[0] * (2 if guided else 1)
        for i, t in enumerate(tqdm(scheduler.timesteps, disable=not progress, desc=type(scheduler).__name__)):
            # (B,) or (2B,)
            t_model = torch.full((model_batch,), round(float(t)), dtype=torch.long, device=device)
            x_in = scheduler.scale_model_input(x, t).to(dtype)
            if guided:
                out_cond, out_uncond = model_fn(torch.cat([x_in, x_in]), t_model, **cond).chunk(2)
                out = classifier_free_guidance(out_cond, out_uncond, guidance_scale)
            else:
                out = model_fn(x_in, t_model, **cond)
            if out.shape != x.shape:
                raise ValueError(f"model output shape {tuple(out.shape)} must equal sample shape {shape}")
            x = scheduler.step(out.to(state_dtype), t, x, **step_kwargs).prev_sample
            if callback is not None:
                callback(i, int(t_model[0]), x)
        return x.to(dtype)


def _randn(shape, generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    """N(0, I) drawn on the generator's device (a CPU generator gives the same noise for any target
    device)."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def _scheduler_class(sampler: str):
    import diffusers  # heavy: imported only when a scheduler is built
    from diffusers.schedulers import KarrasDiffusionSchedulers

    name = SAMPLER_ALIASES.get(sampler, sampler)
    cls = getattr(diffusers, name, None) if name.endswith("Scheduler") else None
    if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
        options = [*SAMPLER_ALIASES, *(s.name for s in KarrasDiffusionSchedulers)]
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(options)} "
                         "(or another diffusers scheduler class name)")
    return cls


def _step_kwargs(scheduler, eta: float, generator: torch.Generator | None) -> dict[str, Any]:
    """Keyword arguments for scheduler.step: eta where it is accepted (DDIM), the generator where used."""
    params = inspect.signature(scheduler.step).parameters
    kwargs: dict[str, Any] = {}
    if "eta" in params:
        kwargs["eta"] = eta
    elif eta != 0:
        raise ValueError(f"eta={eta} is not used by {type(scheduler).__name__}; eta applies to DDIM")
    if "generator" in params:
        kwargs["generator"] = generator
    return kwargs


def _check_cond(cond: dict, uncond: Mapping | None, batch: int) -> None:
    """cond/uncond values are None or batch-first tensors of batch size B; uncond mirrors cond."""
    for name, values in (("cond", cond), ("uncond", uncond or {})):
        for key, value in values.items():
            if value is not None and not (torch.is_tensor(value) and value.ndim >= 1 and value.shape[0]
                                          == batch):
                raise ValueError(f"{name}[{key!r}] must be None or a tensor with batch size {batch} first")
    if uncond is None:
        return
    if set(uncond) != set(cond):
        raise ValueError(f"uncond keys {sorted(uncond)} must equal cond keys {sorted(cond)}")
    for key, value in cond.items():
        other = uncond[key]
        if (value is None) != (other is None) or (value is not None and value.shape != other.shape):
            raise ValueError(f"cond[{key!r}] and uncond[{key!r}] must both be None or tensors of one shape")


def _infer_device(x_T: torch.Tensor | None, cond: Mapping[str, Any]) -> torch.device:
    if x_T is not None:
        return x_T.device
    tensors = [v for v in cond.values() if torch.is_tensor(v)]
    return tensors[0].device if tensors else torch.device("cpu")
