"""Official LVDM checkpoints -> videogen (``videogen.lvdm.convert``), against what the official modules
computed (tests/fixtures/lvdm, README.md there): tiny checkpoints in the official Lightning layout are
rebuilt from their recorded keys and deterministic fill, converted, and their networks must reproduce
the official autoencoder, UNet (unconditional and conditional) and 10-step DDIM outputs to 1e-5; the
released Sky / Taichi files' key lists map completely on meta; bad files fail in one line."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
import torch

import videogen
from videogen.lvdm import LVDM, ConditionalUNet3D, UNet3D, VideoAutoencoder3D
from videogen.lvdm.convert import (
    PRESETS,
    convert_lvdm,
    map_official_state_dict,
    official_key_map,
    read_official_config,
)
from videogen.lvdm.unet3d import FactorizedAttention, mix_given

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "lvdm"
RTOL = 1e-5


# ---- the fixtures ------------------------------------------------------------------------------------
def hash_uniform(n: int, seed: int) -> torch.Tensor:
    """The generator's deterministic fill (tests/fixtures/lvdm/make_fixtures.py): [-1, 1) from an integer
    hash of (index, seed)."""
    x = (torch.arange(n, dtype=torch.int64) + seed * 0x9E3779B1) & 0xFFFFFFFF
    x = (((x >> 16) ^ x) * 0x45D9F3B) & 0xFFFFFFFF
    x = (((x >> 16) ^ x) * 0x45D9F3B) & 0xFFFFFFFF
    x = (x >> 16) ^ x
    return x.double() / 2.0**31 - 1.0


@pytest.fixture(scope="module")
def official():
    from safetensors.torch import load_file

    with gzip.open(FIXTURES / "tiny_checkpoints.json.gz", "rt") as f:
        specs = json.load(f)
    return specs, load_file(str(FIXTURES / "official_outputs.safetensors"))


def materialise(spec: dict, outputs: dict, name: str) -> dict[str, torch.Tensor]:
    """The official state dict recorded in ``spec`` (every key in the official order, aliases shared)."""
    state: dict[str, torch.Tensor] = {}
    for e in spec["state"]:
        shape = tuple(e["shape"])
        if "alias" in e:
            state[e["key"]] = state[e["alias"]]
        elif "fill" in e:
            seed, center, hw = e["fill"]
            state[e["key"]] = (center + hw * hash_uniform(math.prod(shape), seed)).float().reshape(shape)
        elif "const" in e:
            state[e["key"]] = torch.full(shape, e["const"], dtype=getattr(torch, e["dtype"]))
        else:  # kept official values (the noise schedule)
            state[e["key"]] = outputs[e["keep"]]
    return state


@pytest.fixture(scope="module")
def files(official, tmp_path_factory):
    """The tiny official checkpoints as Lightning files: ``{name: (path, config)}``."""
    specs, outputs = official
    root = tmp_path_factory.mktemp("official")
    out = {}
    for name, spec in specs.items():
        path = root / f"{name}.ckpt"
        torch.save({"epoch": 3, "global_step": 1234, "pytorch-lightning_version": "1.4.2",
                    "state_dict": materialise(spec, outputs, name)}, path)
        out[name] = (path, spec["config"])
    return out


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = RTOL) -> float:
    """Relative difference ``|a - b| / |b|`` (max-abs over max-abs)."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


# ---- autoencoder ---------------------------------------------------------------------------------------
def test_autoencoder_matches_the_official_encode_and_decode(files, official):
    _, out = official
    path, config = files["ae"]
    ae = convert_lvdm(path, config=config, latent_scale=0.5, latent_shift=0.25)
    assert isinstance(ae, VideoAutoencoder3D)
    with torch.no_grad():
        mean, logvar = ae.encode_moments(out["ae.video"])
        decoded = ae.decode(out["ae.mean"], normalized=False)
        normalized = ae.encode(out["ae.video"], sample=False)
    assert close(mean, out["ae.mean"]) < RTOL and close(logvar, out["ae.logvar"]) < RTOL
    assert close(decoded, out["ae.decoded"]) < RTOL
    assert close(normalized, 0.5 * (out["ae.mean"] + 0.25)) < RTOL  # scale * (z + shift)
    from_diffusion_config = convert_lvdm(path, config=files["short"][1])  # its scale / shift: 0.5 / 0.25
    assert float(from_diffusion_config.scale) == 0.5 and float(from_diffusion_config.shift) == 0.25


# ---- UNets ---------------------------------------------------------------------------------------------
def test_short_unet_matches_the_official_one_raw_and_ema(files, official):
    _, out = official
    path, config = files["short"]
    pipe = convert_lvdm(path, config=config)
    assert isinstance(pipe, LVDM) and isinstance(pipe.short, UNet3D) and pipe.prediction is None
    assert pipe.short.config["relative_position"] == "official" and pipe.timesteps == "official"
    with torch.no_grad():
        eps = pipe.short(out["short.x"], out["short.t"])
        ema = convert_lvdm(path, config=config, ema=True).short(out["short.x"], out["short.t"])
    assert close(eps, out["short.eps_raw"]) < RTOL  # the short script samples with the raw weights
    assert close(ema, out["short.eps_ema"]) < RTOL
    assert close(eps, out["short.eps_ema"]) > 1e-2  # the two sets of weights differ


@pytest.mark.parametrize("kind", ["prediction", "interpolation"])
def test_conditional_unet_matches_the_official_one(files, official, kind):
    """Conditional (given latents written into the input, mask channel, level s) and unconditional (all-zero
    mask, no level: videogen's null row) calls; EMA weights by default, raw with ema=False."""
    _, out = official
    path, config = files[kind]
    pipe = convert_lvdm(path, config=config)
    net = pipe.prediction if kind == "prediction" else pipe.interpolation
    assert isinstance(net, ConditionalUNet3D) and pipe.short is None
    assert (pipe.prediction is None) == (kind == "interpolation")
    x, t, s = out[f"{kind}.x"], out[f"{kind}.t"], out[f"{kind}.s"]
    mask = out[f"{kind}.mask"].bool()
    given = torch.zeros_like(x)
    given[:, :, mask[0]] = out[f"{kind}.noisy_cond"]
    raw = convert_lvdm(path, config=config, ema=False)
    raw_net = raw.prediction if kind == "prediction" else raw.interpolation
    with torch.no_grad():
        for model, weights in ((net, "ema"), (raw_net, "raw")):
            eps_c = model(mix_given(x, given, mask), t, mask=mask, noise_level=s)
            eps_u = model(x, t)
            assert close(eps_c, out[f"{kind}.eps_cond_{weights}"]) < RTOL
            assert close(eps_u, out[f"{kind}.eps_uncond_{weights}"]) < RTOL
    assert float(net.noise_level_embed.weight.detach()[net.null_level].abs().max()) == 0.0
    attention = next(m for m in net.modules() if isinstance(m, FactorizedAttention))
    assert attention.temporal.max_distance == (5 if kind == "interpolation" else 4)  # 11 / 9 table rows
    assert pipe.keyframe_stride == 4


# ---- sampling -----------------------------------------------------------------------------------------
def test_ten_ddim_steps_match_the_official_sampler(files, official):
    """The official DDIM timesteps (1, 101, ..., 901), eta 0 from the same x_T and eta 1 from the same seed
    (x_T and every step's noise drawn in the same order), and the decoded video of ``generate``."""
    _, out = official
    path, config = files["short"]
    pipe = convert_lvdm(path, config=config)
    scheduler = pipe.make_scheduler("ddim")
    scheduler.set_timesteps(10)
    assert scheduler.timesteps.tolist() == sorted(out["short.ddim_timesteps"].tolist(), reverse=True)
    shape = tuple(out["short.ddim_xT"].shape)
    z0 = pipe.diffusion.sample(pipe.short, shape, sampler=pipe.make_scheduler("ddim"), num_steps=10, eta=0.0,
                               x_T=out["short.ddim_xT"], progress=False)
    assert close(z0, out["short.ddim_eta0"]) < RTOL
    z1 = pipe.diffusion.sample(pipe.short, shape, sampler=pipe.make_scheduler("ddim"), num_steps=10, eta=1.0,
                               generator=torch.Generator().manual_seed(1234), progress=False)
    assert close(z1, out["short.ddim_eta1_seed1234"]) < RTOL
    video = pipe.generate(num_samples=1, num_steps=10, eta=1.0, generator=torch.Generator().manual_seed(1234),
                          progress=False)
    assert video.shape == (1, 3, pipe.clip_frames, *pipe.video_size)
    decoded = out["short.ddim_eta1_decoded"]  # the random tiny decoder's values reach +-25
    with torch.no_grad():
        assert close(pipe.autoencoder.decode(z1), decoded) < RTOL
    assert torch.allclose(video, decoded.clamp(-1, 1), rtol=0, atol=RTOL * float(decoded.abs().max()))
    videogen_steps = LVDM(pipe.autoencoder, None, short=pipe.short).make_scheduler("ddim")
    videogen_steps.set_timesteps(10)
    assert videogen_steps.timesteps.tolist() == list(range(999, 0, -100))  # trailing (videogen default)


def test_guided_clip_matches_the_official_sampler(files, official):
    """A prediction clip given its first latent, 10 DDIM steps (eta 0) with unconditional guidance w = 0.1
    (``cfg_original``): with ``conditioning="official"`` (what conversion sets) the noisy given latent
    overwrites the running state, as the official sampler does (B8), and the generated latents agree;
    videogen's own conditioning (the unconditional branch sees the state as it is) gives another clip."""
    _, out = official
    path, config = files["prediction"]
    pipe = convert_lvdm(path, config=config)
    assert pipe.conditioning == "official"
    kw = dict(given=torch.zeros(1, 4, 1, 4, 4), given_at=(0,), cond_noise_level=100, guidance=0.1,
              num_steps=10, eta=0.0, given_noisy=out["prediction.guided_given_noisy"],
              x_T=out["prediction.guided_xT"])
    z = pipe.sample_clip(pipe.prediction, 4, (4, 4), 1, **kw)
    want = out["prediction.guided_ddim_eta0"]
    assert close(z[:, :, 1:], want[:, :, 1:]) < RTOL  # generated latents (the given one comes back clean)
    pipe.conditioning = "videogen"
    other = pipe.sample_clip(pipe.prediction, 4, (4, 4), 1, **kw)
    assert close(other[:, :, 1:], want[:, :, 1:]) > 1e-3


def test_converted_pipeline_saves_and_reloads(files, official, tmp_path):
    _, out = official
    path, config = files["prediction"]
    pipe = convert_lvdm(path, config=config)
    pipe.save_pretrained(tmp_path / "pred")
    again = videogen.load_pretrained(tmp_path / "pred")
    assert again.timesteps == "official" and again.prediction.config["relative_position"] == "official"
    assert again.conditioning == "official"
    x, t = out["prediction.x"], out["prediction.t"]
    with torch.no_grad():
        assert torch.equal(again.prediction(x, t), pipe.prediction(x, t))
    gen = [p.generate(num_samples=1, num_steps=2, generator=torch.Generator().manual_seed(0), progress=False)
           for p in (pipe, again)]
    assert torch.equal(gen[0], gen[1])
    short = convert_lvdm(files["short"][0], config=files["short"][1])
    short.save_pretrained(tmp_path / "short")  # a pipeline of a short model alone (no prediction model)
    again = videogen.load_pretrained(tmp_path / "short")
    assert again.prediction is None and again.conditions == ()
    gen = [p.generate(num_samples=1, num_steps=2, generator=torch.Generator().manual_seed(0), progress=False)
           for p in (short, again)]
    assert torch.equal(gen[0], gen[1])
    ae = convert_lvdm(files["ae"][0], config=files["ae"][1])
    ae.save_pretrained(tmp_path / "ae")
    assert torch.equal(VideoAutoencoder3D.from_pretrained(tmp_path / "ae").encoder[0].conv.weight,
                       ae.encoder[0].conv.weight)


def test_corrected_mode_loads_the_same_weights_into_another_function(files, official):
    """official=False: identical tensors, videogen's corrected relative positions: the UNet output moves
    (the measured size is in docs/lvdm.md); the autoencoder has no such switch (difference 0)."""
    _, out = official
    path, config = files["short"]
    a, b = convert_lvdm(path, config=config), convert_lvdm(path, config=config, official=False)
    assert b.short.config["relative_position"] == "corrected" and b.timesteps == "trailing"
    sa, sb = a.short.state_dict(), b.short.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    with torch.no_grad():
        diff = close(b.short(out["short.x"], out["short.t"]), out["short.eps_raw"])
        z = out["short.ddim_eta0"]
        ae_diff = close(b.autoencoder.decode(z), a.autoencoder.decode(z))
    assert diff > 0.01
    assert ae_diff == 0.0


# ---- the released files ----------------------------------------------------------------------------------
UNET_PARAMETERS = {"short_sky": 548_904_580, "short_taichi": 548_904_580, "sky_pred": 549_163_908,
                   "sky_interp": 549_181_060}


@pytest.mark.parametrize("name", ["ae_sky", "ae_taichi", "short_sky", "short_taichi", "sky_pred",
                                  "sky_interp"])
def test_released_key_lists_map_completely(name):
    """The key names and shapes the official modules give the released files (recorded on meta; the
    prediction / interpolation files of the official long-video configs were never released) map onto the
    videogen networks with nothing missing or left over, through the converter's own mapping; the presets
    are the released files' configs."""
    with gzip.open(FIXTURES / "released_keys.json.gz", "rt") as f:
        record = json.load(f)[name]
    state = {k: torch.empty(shape, device="meta") for k, shape in record["keys"]}
    config = {"config": record["model"]} if name.startswith("sky_") else {"preset": name}
    if name in PRESETS:
        preset = {k: v for k, v in PRESETS[name].items() if k in ("target", "params")}
        first_stage = record["model"]["params"].get("first_stage_config", {}).get("params", {})
        first_stage.pop("ckpt_path", None)  # the official yaml points at a file: no architecture
        assert json.loads(json.dumps(preset)) == record["model"]
    for ema in (False, True):
        mapped = map_official_state_dict(state, ema=ema, **config)
        assert set(mapped) == ({"autoencoder"} if name.startswith("ae") else {"autoencoder", "unet"})
    assert len(mapped["autoencoder"]) == 96
    if "unet" in mapped:
        assert len(mapped["unet"]) == (668 if name.startswith("short") else 669)
        assert sum(math.prod(v.shape) for v in mapped["unet"].values()) == UNET_PARAMETERS[name]
    assert len(official_key_map(**config)["autoencoder"]) == 96


def test_presets_and_configs():
    assert {"ae_sky", "short_sky", "ae_taichi", "short_taichi", "t2v"} <= set(PRESETS)
    assert PRESETS["short_taichi"]["params"]["scale_factor"] == 0.175733933
    assert PRESETS["ae_sky"]["latent_shift"] == 1.4606637
    with pytest.raises(KeyError, match="unknown LVDM preset"):
        PRESETS["ucf"]


def test_read_official_config_refuses_unknown_targets(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("model:\n  target: lvdm.models.autoencoder3d.AutoencoderKL\n  params: {embed_dim: 4}\n")
    assert read_official_config(good) == {"target": "lvdm.models.autoencoder3d.AutoencoderKL",
                                          "params": {"embed_dim": 4}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  target: os.system\n  params: {}\n")
    with pytest.raises(ValueError, match="os.system"):
        read_official_config(bad)
    with pytest.raises(FileNotFoundError):
        read_official_config(tmp_path / "none.yaml")


def test_bad_files_fail_in_one_line(files, tmp_path):
    short, config = files["short"]
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError) as err:
        convert_lvdm(corrupt, config=config)
    assert "\n" not in str(err.value)
    # the short file given the autoencoder config, the short and prediction files each other's config,
    # an autoencoder of another size
    with pytest.raises(ValueError, match="not an official LVDM autoencoder checkpoint.*unexpected") as err:
        convert_lvdm(short, config=files["ae"][1])
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="not an official LVDM prediction / interpolation checkpoint"):
        convert_lvdm(short, config=files["prediction"][1])
    with pytest.raises(ValueError, match="not an official LVDM short checkpoint.*unexpected keys"):
        convert_lvdm(files["prediction"][0], config=config)
    wider = json.loads(json.dumps(files["ae"][1]))
    for part in ("encoder", "decoder"):
        wider["params"]["ddconfig"][part]["params"]["n_hiddens"] = 32
    with pytest.raises(ValueError, match="does not fit this official LVDM autoencoder config: encoder"):
        convert_lvdm(files["ae"][0], config=wider)
    state = torch.load(short, weights_only=True)["state_dict"]
    state["model.diffusion_model.extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "extra.ckpt")
    with pytest.raises(ValueError, match="unexpected keys model.diffusion_model.extra.weight"):
        convert_lvdm(tmp_path / "extra.ckpt", config=config)
    wrong_schedule = json.loads(json.dumps(config))
    wrong_schedule["params"]["linear_end"] = 0.012
    with pytest.raises(ValueError, match="noise schedule"):
        convert_lvdm(short, config=wrong_schedule)
    with pytest.raises(ValueError, match="no EMA weights"):
        torch.save({"state_dict": {k: v for k, v in state.items() if not k.startswith("model_ema.")
                                   and "extra" not in k}}, tmp_path / "no_ema.ckpt")
        convert_lvdm(tmp_path / "no_ema.ckpt", config=config, ema=True)
    with pytest.raises(ValueError, match="give config"):
        convert_lvdm(short)


def test_text2video_configs_go_to_the_text2video_converter(monkeypatch, tmp_path):
    """A text-to-video config (temporal transformer, a text encoder) or the t2v preset is handed, with the
    file's state dict, to ``convert_text2video.text2video_from_official``."""
    from videogen.lvdm import convert_text2video

    calls = []
    monkeypatch.setattr(convert_text2video, "text2video_from_official",
                        lambda state, params, official, **kw: calls.append((set(state), params, official,
                                                                             kw)))
    torch.save({"state_dict": {"model.diffusion_model.x": torch.zeros(1)}}, tmp_path / "t2v.ckpt")
    convert_lvdm(tmp_path / "t2v.ckpt", preset="t2v", official=False, tokenizer="tok")
    assert calls == [({"model.diffusion_model.x"}, convert_text2video.TEXT2VIDEO_PRESET, False,
                      {"tokenizer": "tok"})]
    assert PRESETS["t2v"]["params"] is convert_text2video.TEXT2VIDEO_PRESET
    with pytest.raises(ValueError, match="tokenizer is for the text-to-video file only"):
        convert_lvdm(tmp_path / "t2v.ckpt", preset="short_sky", tokenizer="tok")


def test_cli_convert_lvdm_writes_a_folder_that_loads(files, official, tmp_path):
    """`videogen convert lvdm --ckpt F --config official.yaml --out DIR` (the official yaml layout, read with
    read_official_config) gives the folder `videogen.load_pretrained` opens, with the official outputs."""
    import yaml

    from videogen.cli import LVDM_PRESETS, main

    assert LVDM_PRESETS == tuple(PRESETS)
    _, out = official
    path, config = files["short"]
    (tmp_path / "short.yaml").write_text(yaml.safe_dump({"model": config, "data": {"target": "x"}}))
    assert main(["convert", "lvdm", "--ckpt", str(path), "--config", str(tmp_path / "short.yaml"),
                 "--out", str(tmp_path / "short")]) == 0
    pipe = videogen.load_pretrained(tmp_path / "short")
    with torch.no_grad():
        assert close(pipe.short(out["short.x"], out["short.t"]), out["short.eps_raw"]) < RTOL


def test_the_cli_knows_every_preset():
    """`videogen convert lvdm --preset` lists the presets without importing torch; the lists agree."""
    from videogen.cli import LVDM_PRESETS
    from videogen.lvdm.convert import PRESETS

    assert set(LVDM_PRESETS) == set(PRESETS)
