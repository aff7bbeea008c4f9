"""videogen.core.diffusion against diffusers (the oracle), closed forms and a tiny model that learns."""

from __future__ import annotations

import inspect
import math

import diffusers
import numpy as np
import pytest
import torch
from torch import nn

from videogen.core.diffusion import GaussianDiffusion, classifier_free_guidance, make_betas

T = 1000
SHAPES = [(2, 5, 4, 4), (2, 5, 3, 4, 4)]  # images and videos; 5 channels so that a channel > 3 exists


def _view(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.reshape(v.shape[0], -1, *([1] * (ndim - 2)))


class ToyDenoiser:
    """A fixed random linear denoiser with t dependence, plus an optional per-sample class shift y (B, C).

    eps(x_t, t) = sqrt(1 - a_t) / (a_t s^2 + 1 - a_t) (I + 0.3 W) x_t + b, a_t = alpha_bar_t: the optimal
    eps-predictor for x0 ~ N(0, s^2 I) with a random perturbation, so sample magnitudes stay O(1).
    """

    def __init__(self, channels: int = 5, seed: int = 0, data_std: float = 0.5):
        g = torch.Generator().manual_seed(seed)
        self.mix = torch.eye(channels) + 0.3 * torch.randn(channels, channels, generator=g) / channels**0.5
        self.bias = 0.1 * torch.randn(channels, generator=g)
        alpha_bar = torch.from_numpy(np.cumprod(1 - np.linspace(1e-4, 0.02, T)))
        self.gain = ((1 - alpha_bar).sqrt() / (alpha_bar * data_std**2 + 1 - alpha_bar)).float()  # (T,)
        self.calls: list[int] = []

    def __call__(self, x, t, y=None):
        assert t.dtype == torch.long and t.shape == (x.shape[0],)
        self.calls.append(x.shape[0])
        out = torch.einsum("oc,bc...->bo...", self.mix, x) * _view(self.gain[t], x.ndim)
        out = out + _view(self.bias.expand(x.shape[0], -1), x.ndim)
        return out if y is None else out + _view(y, x.ndim)


def diffusers_loop(scheduler, model, shape, num_steps, seed, **step_kwargs):
    """The reference: a hand-written diffusers sampling loop."""
    g = torch.Generator().manual_seed(seed)
    scheduler.set_timesteps(num_steps)
    x = torch.randn(shape, generator=g) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        t_batch = torch.full((shape[0],), round(float(t)), dtype=torch.long)
        out = model(scheduler.scale_model_input(x, t), t_batch)
        noise = {"generator": g} if "generator" in inspect.signature(scheduler.step).parameters else {}
        x = scheduler.step(out, t, x, **noise, **step_kwargs).prev_sample
    return x


def oracle_config(prediction_type="epsilon"):
    """Scheduler config written independently of our module: diffusers' own linear betas, our conventions."""
    return dict(num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                prediction_type=prediction_type, timestep_spacing="trailing")


# ------------------------------------------------------------------------------------------------ schedules
@pytest.mark.parametrize("ours, theirs, start, end", [
    ("linear", "linear", None, None),
    ("scaled_linear", "scaled_linear", None, None),
    ("scaled_linear", "scaled_linear", 0.0015, 0.0155),  # LVDM
    ("cosine", "squaredcos_cap_v2", None, None),
])
@pytest.mark.parametrize("steps", [1000, 37])
def test_betas_match_diffusers(ours, theirs, start, end, steps):
    betas = make_betas(ours, steps, start, end)
    assert betas.dtype == torch.float64 and betas.shape == (steps,)
    kwargs = {} if start is None else dict(beta_start=start, beta_end=end)
    if ours == "linear":
        kwargs = dict(beta_start=1e-4, beta_end=0.02)
    elif ours == "scaled_linear" and start is None:
        kwargs = dict(beta_start=0.00085, beta_end=0.012)
    reference = diffusers.DDPMScheduler(num_train_timesteps=steps, beta_schedule=theirs, **kwargs).betas
    torch.testing.assert_close(betas.float(), reference, rtol=1e-6, atol=1e-9)  # diffusers keeps float32


def test_betas_closed_forms_float64():
    np.testing.assert_allclose(make_betas("linear").numpy(), np.linspace(1e-4, 0.02, T), rtol=0, atol=1e-12)
    sl = np.linspace(0.00085**0.5, 0.012**0.5, T) ** 2
    np.testing.assert_allclose(make_betas("scaled_linear").numpy(), sl, rtol=0, atol=1e-12)
    # cosine: prod(1 - beta) telescopes to alpha_bar(t / T) / alpha_bar(0) wherever the 0.999 cap is inactive.
    betas = make_betas("cosine").numpy()
    alpha_bar = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    expected = np.array([alpha_bar((i + 1) / T) / alpha_bar(0) for i in range(T)])
    uncapped = betas < 0.999
    assert uncapped[:-1].all() and betas[-1] == 0.999
    np.testing.assert_allclose(np.cumprod(1 - betas)[uncapped], expected[uncapped], rtol=1e-12, atol=1e-14)


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="cosine"):
        make_betas("quadratic")
    with pytest.raises(ValueError, match="beta_start"):
        make_betas("linear", beta_start=0.1, beta_end=0.01)
    with pytest.raises(ValueError, match="cosine"):
        make_betas("cosine", beta_start=1e-4)
    with pytest.raises(ValueError, match="positive"):
        make_betas("linear", 0)
    for bad in (dict(prediction_type="x0"), dict(loss_type="huber"), dict(snr_gamma=0.0)):
        with pytest.raises(ValueError):
            GaussianDiffusion(**bad)


# ---------------------------------------------------------------------------------------- forward process
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("shape", SHAPES)
def test_conversions_invert_exactly(prediction_type, shape):
    diffusion = GaussianDiffusion(prediction_type=prediction_type, beta_schedule="cosine")
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    noise = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.tensor([3, 987])  # per-sample timesteps, near both ends
    x_t = diffusion.add_noise(x0, noise, t)
    out = diffusion.target(x0, noise, t)
    torch.testing.assert_close(diffusion.predict_x0(x_t, t, out), x0, rtol=0, atol=1e-10)
    torch.testing.assert_close(diffusion.predict_eps(x_t, t, out), noise, rtol=0, atol=1e-10)
    # add_noise equals diffusers' (float32 tables) on the same per-sample timesteps
    ref = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2").add_noise(x0.float(), noise.float(), t)
    torch.testing.assert_close(x_t.float(), ref, rtol=1e-5, atol=1e-5)


def test_tables_stay_float64_under_dtype_casts():
    diffusion = GaussianDiffusion().to(torch.bfloat16)
    assert diffusion.betas.dtype == diffusion.alphas_cumprod.dtype == torch.float64
    assert not diffusion.state_dict()  # non-persistent: never in checkpoints
    noise = torch.ones(2, 3, 2, 2, dtype=torch.bfloat16)
    t = torch.tensor([0, 1])
    out = diffusion.add_noise(torch.zeros_like(noise), noise, t)
    assert out.dtype == torch.bfloat16
    # bf16 tables round alpha_bar_0 = 0.9999 to 1, i.e. sigma_0 = 0; float64 tables keep sigma_0 = 0.01
    assert torch.tensor(0.9999, dtype=torch.bfloat16) == 1
    expected = (1 - diffusion.alphas_cumprod[t]).sqrt().to(torch.bfloat16)
    assert torch.equal(out[:, 0, 0, 0], expected) and (expected > 0.009).all()


def test_sample_timesteps_uniform_and_seeded():
    diffusion = GaussianDiffusion(num_train_timesteps=10)
    t = diffusion.sample_timesteps(20000, "cpu", torch.Generator().manual_seed(0))
    assert t.dtype == torch.long and t.min() == 0 and t.max() == 9
    counts = torch.bincount(t, minlength=10).float()
    assert (counts / 2000 - 1).abs().max() < 0.1
    t2 = diffusion.sample_timesteps(20000, "cpu", torch.Generator().manual_seed(0))
    assert torch.equal(t, t2)


# ------------------------------------------------------------------------------------------------ training
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_perfect_model_has_zero_loss(prediction_type):
    diffusion = GaussianDiffusion(prediction_type=prediction_type, snr_gamma=5.0)
    x0 = torch.randn(4, 3, 2, 4, 4, dtype=torch.float64)

    def perfect(x_t, t):  # knows x0, reads eps off x_t
        a = diffusion.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1, 1)
        eps = (x_t - a * x0) / (1 - a**2).sqrt()
        return diffusion.target(x0, eps, t)

    loss = diffusion.training_loss(perfect, x0, generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and loss.item() < 1e-12


@pytest.mark.parametrize("prediction_type, weight_of_snr", [
    ("epsilon", lambda snr, g: np.minimum(snr, g) / snr),
    ("v_prediction", lambda snr, g: np.minimum(snr, g) / (snr + 1)),
    ("sample", lambda snr, g: np.minimum(snr, g)),
])
def test_min_snr_weighting(prediction_type, weight_of_snr):
    gamma, t = 5.0, torch.tensor([0, 100, 300, 600, 999])
    x0 = torch.randn(5, 2, 3, 3)
    unit_error = lambda x_t, t: diffusion.target(x0, noise, t) + 1  # noqa: E731  (error 1 on every element)
    noise = torch.randn_like(x0)
    diffusion = GaussianDiffusion(prediction_type=prediction_type, snr_gamma=gamma)
    alpha_bar = np.cumprod(1 - np.linspace(1e-4, 0.02, T))[t.numpy()]
    weights = weight_of_snr(alpha_bar / (1 - alpha_bar), gamma)
    np.testing.assert_allclose(diffusion.loss_weight(t).numpy(), weights, rtol=1e-10)
    loss = diffusion.training_loss(unit_error, x0, noise=noise, t=t)
    assert loss.item() == pytest.approx(weights.mean(), rel=1e-5)
    assert not np.allclose(weights, weights[0])  # the weighting actually varies with t
    plain = GaussianDiffusion(prediction_type=prediction_type).training_loss(unit_error, x0, noise=noise, t=t)
    assert plain.item() == pytest.approx(1.0, rel=1e-6)
    l1 = GaussianDiffusion(loss_type="l1").training_loss(lambda x_t, t: noise - 2, x0, noise=noise, t=t)
    assert l1.item() == pytest.approx(2.0, rel=1e-6)


def test_training_loss_bad_inputs():
    diffusion = GaussianDiffusion()
    x0 = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="t must"):
        diffusion.training_loss(lambda x, t: x, x0, t=torch.tensor([0, 1000]))
    with pytest.raises(ValueError, match=r"\(B,\)"):
        diffusion.training_loss(lambda x, t: x, x0, t=torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="noise shape"):
        diffusion.training_loss(lambda x, t: x, x0, noise=torch.randn(2, 3, 4, 5))
    with pytest.raises(ValueError, match="model output shape"):
        diffusion.training_loss(lambda x, t: x[:, :1], x0)


class TinyMLP(nn.Module):
    """eps(x_t, t) for 2-D points stored as (B, 2, 1, 1)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(),
                                 nn.Linear(128, 2))

    def forward(self, x, t):
        h = torch.cat([x.flatten(1), (t.float() / T - 0.5).unsqueeze(1)], dim=1)  # (B, 3)
        return self.net(h).view_as(x)


def two_clusters(n, generator):
    centres = torch.tensor([[-1.0, -1.0], [1.0, 1.0]])
    idx = torch.randint(0, 2, (n,), generator=generator)
    return (centres[idx] + 0.05 * torch.randn(n, 2, generator=generator)).view(n, 2, 1, 1)


def test_tiny_mlp_learns_two_clusters_and_samples_them():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny MLP gains nothing from threads and loses much on a busy machine
    try:
        diffusion, model = GaussianDiffusion(), TinyMLP()
        g = torch.Generator().manual_seed(0)
        x_eval = two_clusters(2048, g)
        eval_kwargs = dict(noise=torch.randn(x_eval.shape, generator=g),
                           t=diffusion.sample_timesteps(2048, "cpu", g))

        def eval_loss():
            with torch.no_grad():
                return diffusion.training_loss(model, x_eval, **eval_kwargs).item()

        before = eval_loss()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(400):
            loss = diffusion.training_loss(model, two_clusters(256, g), generator=g)
            opt.zero_grad()
            loss.backward()
            opt.step()
        after = eval_loss()
        print(f"eval loss {before:.3f} -> {after:.3f}")
        assert after < before / 4, (before, after)
        samples = diffusion.sample(lambda x, t: model(x, t), (256, 2, 1, 1), num_steps=50, progress=False,
                                   generator=torch.Generator().manual_seed(1)).view(256, 2)
        dist = torch.cdist(samples, torch.tensor([[-1.0, -1.0], [1.0, 1.0]])).min(dim=1).values
        assert dist.median() < 0.25, dist.median()
        assert (samples.sum(1) > 0).float().mean().item() == pytest.approx(0.5, abs=0.15)  # both clusters
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------ sampling
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sampler, oracle, step_kwargs", [
    ("ddim", lambda: diffusers.DDIMScheduler(**oracle_config(), clip_sample=False), dict(eta=0.0)),
    ("ddim", lambda: diffusers.DDIMScheduler(**oracle_config(), clip_sample=False), dict(eta=1.0)),
    ("ddpm", lambda: diffusers.DDPMScheduler(**oracle_config(), clip_sample=False), {}),
    ("dpm++", lambda: diffusers.DPMSolverMultistepScheduler(**oracle_config(), algorithm_type="dpmsolver++"),
     {}),
    ("unipc", lambda: diffusers.UniPCMultistepScheduler(**oracle_config()), {}),
    ("EulerDiscreteScheduler", lambda: diffusers.EulerDiscreteScheduler(**oracle_config()), {}),
])
def test_trajectory_matches_diffusers_loop(shape, sampler, oracle, step_kwargs):
    model = ToyDenoiser()
    reference = diffusers_loop(oracle(), model, shape, 10, seed=0, **step_kwargs)
    seen = []
    ours = GaussianDiffusion().sample(model, shape, sampler=sampler, num_steps=10, progress=False,
                                      generator=torch.Generator().manual_seed(0),
                                      callback=lambda *a: seen.append(a), eta=step_kwargs.get("eta", 0.0))
    assert ours.shape == shape and ours.dtype == torch.float32 and torch.isfinite(ours).all()
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    assert [s[0] for s in seen] == list(range(10)) and seen[0][1] == 999 and seen[-1][1] == 99
    assert torch.equal(seen[-1][2], ours)


@pytest.mark.parametrize("sampler", ["DPMSolverSinglestepScheduler", "HeunDiscreteScheduler"])
def test_other_schedulers_by_class_name_run(sampler):
    out = GaussianDiffusion().sample(ToyDenoiser(), SHAPES[1], sampler=sampler, num_steps=8, progress=False)
    assert out.shape == SHAPES[1] and torch.isfinite(out).all()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("sampler", ["ddim", "dpm++", "unipc"])
def test_oracle_denoiser_recovers_x0(prediction_type, sampler):
    diffusion = GaussianDiffusion(prediction_type=prediction_type, beta_schedule="scaled_linear")
    x0 = torch.rand(SHAPES[1], generator=torch.Generator().manual_seed(3)) * 2 - 1

    def oracle(x_t, t):  # the exact model: reads the true noise off x_t given the known x0
        xt64 = x_t.double()
        a = diffusion.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1, 1)
        eps = (xt64 - a * x0.double()) / (1 - a**2).sqrt()
        return diffusion.target(x0.double(), eps, t).float()

    out = diffusion.sample(oracle, x0.shape, sampler=sampler, num_steps=20, progress=False,
                           generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-4)


def test_make_scheduler_uses_our_betas_and_settings():
    diffusion = GaussianDiffusion(beta_schedule="scaled_linear", beta_start=0.0015, beta_end=0.0155,
                                  prediction_type="v_prediction")
    ddim = diffusion.make_scheduler("ddim")
    assert isinstance(ddim, diffusers.DDIMScheduler)
    assert ddim.config.clip_sample is False and ddim.config.thresholding is False
    assert ddim.config.prediction_type == "v_prediction" and ddim.config.timestep_spacing == "trailing"
    torch.testing.assert_close(ddim.alphas_cumprod, diffusion.alphas_cumprod.float())
    dpm = diffusion.make_scheduler("dpm++", solver_order=3)
    assert isinstance(dpm, diffusers.DPMSolverMultistepScheduler)
    assert dpm.config.algorithm_type == "dpmsolver++" and dpm.config.solver_order == 3
    ldm = diffusion.make_scheduler("ddim", timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False)
    ldm.set_timesteps(50)
    assert ldm.timesteps[0] == 981 and ldm.timesteps[-1] == 1  # the LDM convention remains one call away
    assert isinstance(diffusion.make_scheduler("ddpm"), diffusers.DDPMScheduler)


def test_bad_sampling_inputs():
    diffusion, model = GaussianDiffusion(), ToyDenoiser()
    y = torch.zeros(2, 5)
    bad_calls = {
        "shape must be": dict(shape=(2, 5, 4)),
        "num_steps": dict(num_steps=1001),
        "x_T shape": dict(x_T=torch.zeros(2, 5, 4, 5)),
        "needs `uncond`": dict(guidance_scale=3.0),
        "ddim, dpm\\+\\+": dict(sampler="heun"),
        "eta": dict(sampler="dpm++", eta=1.0),
        "batch size 2": dict(cond={"y": torch.zeros(3, 5)}),
        "both be None": dict(cond={"y": y}, uncond={"y": None}, guidance_scale=2.0),
        "keys": dict(cond={"y": y}, uncond={}, guidance_scale=2.0),
    }
    for message, kwargs in bad_calls.items():
        call = dict(shape=(2, 5, 4, 4), progress=False) | kwargs
        with pytest.raises(ValueError, match=message):
            diffusion.sample(model, call.pop("shape"), **call)
    assert not model.calls  # all rejected before any compute
    with pytest.raises(ValueError, match="no option"):
        diffusion.make_scheduler("ddim", solver_order=2)
    with pytest.raises(ValueError, match="trained_betas"):
        diffusion.make_scheduler("FlowMatchEulerDiscreteScheduler")


# -------------------------------------------------------------------------------------- guidance and seeds
def test_classifier_free_guidance_batched_and_all_channels():
    diffusion, shape = GaussianDiffusion(), SHAPES[1]
    g = torch.Generator().manual_seed(0)
    cond, uncond = {"y": torch.randn(2, 5, generator=g)}, {"y": torch.zeros(2, 5)}
    run = lambda model, **kw: diffusion.sample(model, shape, num_steps=10, progress=False,  # noqa: E731
                                               generator=torch.Generator().manual_seed(7), **kw)
    # scale 1 with uncond given == conditional only (and the unconditional branch is skipped)
    model = ToyDenoiser()
    torch.testing.assert_close(run(model, cond=cond, uncond=uncond, guidance_scale=1.0),
                               run(ToyDenoiser(), cond=cond))
    assert set(model.calls) == {2}
    # scale s == manual combination of two separate calls; one batched call of 2B per step
    model, s = ToyDenoiser(), 4.0
    guided = run(model, cond=cond, uncond=uncond, guidance_scale=s)
    assert model.calls == [4] * 10
    base = ToyDenoiser()
    manual = run(lambda x, t: classifier_free_guidance(base(x, t, **cond), base(x, t, **uncond), s))
    torch.testing.assert_close(guided, manual, rtol=1e-5, atol=1e-5)
    # every channel is guided: conditioning that only touches channel 4 moves only channel 4 (LVDM/DiT
    # pitfall)
    only_c4 = lambda x, t, y: 0.1 * x + _view(y, x.ndim) * (torch.arange(5) == 4).view(1, 5, 1, 1, 1)  # noqa: E731
    c4 = {"y": torch.ones(2, 1)}
    a = diffusion.sample(only_c4, shape, cond=c4, uncond={"y": torch.zeros(2, 1)}, guidance_scale=1.0,
                         num_steps=10, progress=False, generator=torch.Generator().manual_seed(7))
    b = diffusion.sample(only_c4, shape, cond=c4, uncond={"y": torch.zeros(2, 1)}, guidance_scale=5.0,
                         num_steps=10, progress=False, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert (a[:, 4] - b[:, 4]).abs().min() > 1e-3
    # None values pass through as None in both halves
    none_ok = diffusion.sample(lambda x, t, mask=None: 0.1 * x, shape, cond={"mask": None},
                               uncond={"mask": None}, guidance_scale=2.0, num_steps=2, progress=False)
    assert torch.isfinite(none_ok).all()


@pytest.mark.parametrize("sampler, eta", [("ddim", 1.0), ("ddpm", 0.0)])
def test_seed_reproducibility(sampler, eta):
    diffusion, model = GaussianDiffusion(), ToyDenoiser()
    run = lambda seed: diffusion.sample(model, SHAPES[0], sampler=sampler, eta=eta, num_steps=5,  # noqa: E731
                                        progress=False, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(0), run(0))
    assert not torch.allclose(run(0), run(1))
    # with a fixed x_T the stochastic steps still follow the generator
    x_T = torch.randn(SHAPES[0])
    fixed = lambda seed: diffusion.sample(model, SHAPES[0], sampler=sampler, eta=eta, num_steps=5,  # noqa: E731
                                          x_T=x_T, progress=False,
                                          generator=torch.Generator().manual_seed(seed))
    assert torch.equal(fixed(0), fixed(0)) and not torch.allclose(fixed(0), fixed(1))


def test_sample_dtype_bf16_model_input():
    seen = []

    def model(x, t):
        seen.append(x.dtype)
        return 0.1 * x

    out = GaussianDiffusion().sample(model, SHAPES[0], num_steps=3, dtype=torch.bfloat16, progress=False)
    assert out.dtype == torch.bfloat16 and set(seen) == {torch.bfloat16}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_samples_with_cpu_generator_and_cpu_tables():
    diffusion, model = GaussianDiffusion(), ToyDenoiser()  # tables stay on the CPU
    cuda_model = lambda x, t: model(x.cpu(), t.cpu()).to(x.device)  # noqa: E731
    run = lambda device: diffusion.sample(cuda_model, SHAPES[1], num_steps=5, device=device,  # noqa: E731
                                          progress=False, generator=torch.Generator().manual_seed(0))
    on_gpu = run("cuda")
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), run("cpu"), rtol=1e-4, atol=1e-4)
    x0 = torch.randn(2, 3, 4, 4, device="cuda")
    loss = diffusion.training_loss(lambda x_t, t: torch.zeros_like(x_t), x0,
                                   generator=torch.Generator().manual_seed(0))
    assert loss.device.type == "cuda" and loss.item() == pytest.approx(1.0, abs=0.3)
