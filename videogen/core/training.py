"""What every videogen LightningModule shares in training: reproducible per-rank randomness, a
NaN/Inf guard and the learning-rate scaling rule of the LDM codebase.

Randomness.  ``seed_everything`` seeds every DDP process identically, so without more care every rank
draws the same timesteps, noise, condition-drop masks and posterior samples (at 6 GPUs x 16 a step sees
16 distinct draws, not 96).  :class:`TrainingModule` reseeds torch, NumPy and Python's ``random`` at
the start of every training epoch and before every training batch from ``(seed, rank, epoch)`` and
``(seed, rank, batch index)``.  The draws of step ``n`` on rank ``r`` then depend on nothing else, which
also makes a resumed run draw exactly what the uninterrupted run drew (the checkpoint holds the batch
counter; no RNG state needs saving).  The data order is the other half of exact resume:
``videogen.data.VideoDataModule`` shuffles with an epoch-seeded sampler.

Learning rate.  The LDM codebase that LaMD and LVDM build on multiplies ``base_learning_rate`` by
``num_gpus x batch_size x accumulate_grad_batches``; :func:`effective_lr` is that rule, and the modules'
``scale_lr`` switch applies it (docs/recipes.md, "Multi-GPU").

Cluster switches (docs/recipes.md, "Cluster switches").  ``compile`` wraps the trained networks
(:meth:`TrainingModule.trained_networks`) in ``torch.compile`` in place (``nn.Module.compile``), so
``state_dict`` keys, checkpoints and pipeline records keep their names (no ``_orig_mod.``).  ``optimizer``
picks the optimiser implementation from the recipe (``adam``, ``adamw``, fused / foreach kernels, or
bitsandbytes' 8-bit ``adam8bit`` / ``adamw8bit``) while each module keeps its own hyper-parameters (betas,
weight decay) and the ``scale_lr`` rule: ``None`` builds exactly the optimiser the module always built.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

__all__ = ["COMPILE_MODES", "OPTIMIZERS", "TrainingModule", "build_optimizer", "compile_settings",
           "derived_seed", "effective_lr", "encode_items", "optimizer_settings", "reseed"]


def derived_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys, well mixed (NumPy's SeedSequence): no two key tuples collide in
    practice."""
    return int(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(2,
                                                                                          np.uint64)[0] >> 1)


def reseed(seed: int) -> None:
    """Seed torch (all devices), NumPy and Python's ``random`` with ``seed``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def effective_lr(base_lr: float, batch_size: int, devices: int = 1, num_nodes: int = 1,
                 accumulate_grad_batches: int = 1) -> float:
    """LDM's rule: ``lr = base_lr x (devices x num_nodes) x batch_size x accumulate_grad_batches``."""
    return base_lr * devices * num_nodes * batch_size * accumulate_grad_batches


# ---- cluster switches: torch.compile and the optimiser from the recipe ------------------------------------
#: ``torch.compile`` modes (``mode=None`` is ``"default"``)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
_COMPILE_KEYS = ("mode", "fullgraph", "dynamic", "backend", "options")


def compile_settings(compile: bool | str | dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``torch.compile`` keywords of a recipe's ``compile`` value, or ``None`` (no compilation).

    ``False``/``None``: off; ``True``: ``torch.compile`` defaults; a mode name (``"max-autotune"`` ...);
    or a dict of ``mode``, ``fullgraph``, ``dynamic``, ``backend``, ``options``.
    """
    if compile is None or compile is False:
        return None
    if compile is True:
        return {}
    if isinstance(compile, str):
        compile = {"mode": compile}
    if not isinstance(compile, dict):
        raise ValueError(f"compile must be a bool, a mode name or a dict, got {type(compile).__name__}")
    unknown = sorted(set(compile) - set(_COMPILE_KEYS))
    if unknown:
        raise ValueError(f"compile: unknown keys {unknown}; allowed: {list(_COMPILE_KEYS)}")
    mode = compile.get("mode")
    if mode is not None and mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {list(COMPILE_MODES)}, got {mode!r}")
    return dict(compile)


#: optimiser name -> (module, class, keywords a recipe may set besides ``lr``)
OPTIMIZERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "adam": ("torch.optim", "Adam", ("betas", "eps", "weight_decay", "amsgrad", "foreach", "fused")),
    "adamw": ("torch.optim", "AdamW", ("betas", "eps", "weight_decay", "amsgrad", "foreach", "fused")),
    "adam8bit": ("bitsandbytes.optim", "Adam8bit",
                 ("betas", "eps", "weight_decay", "min_8bit_size", "percentile_clipping", "block_wise")),
    "adamw8bit": ("bitsandbytes.optim", "AdamW8bit",
                  ("betas", "eps", "weight_decay", "min_8bit_size", "percentile_clipping", "block_wise")),
}


def optimizer_settings(optimizer: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """A recipe's ``optimizer`` value checked: ``None`` (the module's own optimiser), a name of
    :data:`OPTIMIZERS`, or ``{"name": ..., <keywords>}`` (e.g. ``{"name": "adamw", "fused": true}``).

    A name whose package is missing (bitsandbytes for the 8-bit ones) fails here, at construction."""
    if optimizer is None:
        return None
    if isinstance(optimizer, str):
        optimizer = {"name": optimizer}
    if not isinstance(optimizer, dict):
        raise ValueError(f"optimizer must be a name or a dict, got {type(optimizer).__name__}")
    settings = dict(optimizer)
    name = settings.get("name")
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer name must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    package, _, allowed = OPTIMIZERS[name]
    unknown = sorted(set(settings) - {"name", *allowed})
    if unknown:
        raise ValueError(f"optimizer {name!r}: unknown keys {unknown}; allowed: {list(allowed)}")
    root = package.split(".")[0]
    if root != "torch" and importlib.util.find_spec(root) is None:
        raise ImportError(f"optimizer {name!r} needs the {root} package: pip install 'videogen[bnb]'")
    return settings


def build_optimizer(params: Iterable[torch.nn.Parameter], lr: float, default: dict[str, Any],
                    settings: dict[str, Any] | None = None) -> torch.optim.Optimizer:
    """The optimiser of ``params`` at ``lr``: ``default`` (``{"name": ..., <keywords>}``, the module's own
    choice) updated by the recipe's checked ``settings`` (:func:`optimizer_settings`).

    A name in ``settings`` swaps the implementation and keeps the module's keywords it accepts (betas,
    weight decay ...); keywords in ``settings`` win."""
    settings = settings or {}
    name = settings.get("name", default["name"])
    package, cls_name, allowed = OPTIMIZERS[name]
    kwargs = {k: v for k, v in default.items() if k != "name" and k in allowed}
    kwargs.update({k: v for k, v in settings.items() if k != "name"})
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    try:
        cls = getattr(importlib.import_module(package), cls_name)
    except ImportError as err:
        raise ImportError(f"optimizer {name!r} needs the {package.split('.')[0]} package: "
                          f"pip install 'videogen[bnb]' ({err})") from None
    return cls(params, lr=lr, **kwargs)


_EPOCH, _BATCH = 1, 2  # key tags: epoch-start and per-batch seeds never coincide


class TrainingModule(pl.LightningModule):
    """LightningModule base of every videogen stage: per-rank, per-step seeding and a finite-loss guard.

    Subclasses that override ``on_train_epoch_start`` or ``on_train_batch_start`` call ``super()``.

    Args:
        seed: base seed of the per-step streams; ``None`` takes ``PL_GLOBAL_SEED`` (set by
            ``seed_everything``, i.e. the recipe's ``seed_everything``), else 0.
        nan_policy: what a NaN/Inf loss term does: ``"raise"`` (stop, naming the step and the term) or
            ``"skip"`` (skip that optimiser step and count it in ``skipped_nonfinite``).
        compile: ``torch.compile`` of :meth:`trained_networks` at the start of ``fit``
            (:func:`compile_settings`: ``False``, ``True``, a mode name or a dict of its keywords).
        optimizer: the optimiser implementation (:func:`optimizer_settings`); ``None``: the module's own.
    """

    def __init__(self, seed: int | None = None, nan_policy: str = "raise",
                 compile: bool | str | dict[str, Any] | None = False,
                 optimizer: str | dict[str, Any] | None = None) -> None:
        super().__init__()
        if nan_policy not in ("raise", "skip"):
            raise ValueError(f"nan_policy must be 'raise' or 'skip', got {nan_policy!r}")
        self._seed, self.nan_policy = seed, nan_policy
        self.skipped_nonfinite = 0
        self.compile_settings = compile_settings(compile)
        self.optimizer_settings = optimizer_settings(optimizer)

    # ---- cluster switches -----------------------------------------------------------------------
    def trained_networks(self) -> dict[str, torch.nn.Module]:
        """The networks this stage trains, by attribute name (what ``compile`` compiles); none here."""
        return {}

    def compile_networks(self) -> list[str]:
        """``torch.compile`` each trained network in place (``nn.Module.compile``: the module object, its
        parameters and its ``state_dict`` keys stay); the names compiled.  Nothing when ``compile`` is
        off; a network already compiled is left as it is."""
        if self.compile_settings is None:
            return []
        networks = self.trained_networks()
        if not networks:
            raise ValueError(f"compile: {type(self).__name__} names no trained_networks() to compile")
        for net in networks.values():
            if getattr(net, "_compiled_call_impl", None) is None:
                net.compile(**self.compile_settings)
        return list(networks)

    def on_fit_start(self) -> None:
        """Compile the trained networks (after the strategy wrapped the model, as FSDP wants)."""
        self.compile_networks()

    def make_optimizer(self, params: Iterable[torch.nn.Parameter], lr: float, name: str,
                       **defaults: Any) -> torch.optim.Optimizer:
        """The optimiser of ``params``: the module's choice ``name`` with ``defaults`` (betas, weight
        decay ...), or the recipe's ``optimizer`` over it (:func:`build_optimizer`)."""
        return build_optimizer(params, lr, {"name": name, **defaults}, self.optimizer_settings)

    @property
    def base_seed(self) -> int:
        if self._seed is not None:
            return int(self._seed)
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    def _batch_counter(self) -> int:
        """Training batches started so far (restored from the checkpoint on resume)."""
        return int(self.trainer.fit_loop.epoch_loop.batch_progress.total.ready)

    def on_train_epoch_start(self) -> None:
        # before the epoch's DataLoader iterator exists: worker seeds and random crops are reproducible too
        reseed(derived_seed(self.base_seed, self.global_rank, _EPOCH, self.current_epoch))

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        reseed(derived_seed(self.base_seed, self.global_rank, _BATCH, self._batch_counter()))

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """uint8 images and videos of a dict batch (``ClipDataset(dtype="uint8")``: ``(B, C, T, H, W)``,
        ``(B, C, H, W)``) become float32 in [-1, 1] here, on the device, with the dataset's float values
        (``x / 127.5 - 1``); every loop (train, val, test, predict) gets them as if the dataset were float.
        A channels-last batch (``videogen.data.collate``) is made contiguous first, on the device."""
        batch = super().on_after_batch_transfer(batch, dataloader_idx)
        if isinstance(batch, dict):
            from .video import uint8_to_float

            batch = {k: uint8_to_float(v.contiguous())
                     if isinstance(v, torch.Tensor) and v.dtype == torch.uint8 and v.ndim in (4, 5) else v
                     for k, v in batch.items()}
        return batch

    #: attributes holding frozen earlier stages (e.g. ``("mcdvae", "text_encoder")``): :meth:`freeze_stages`
    #: stops their gradients, and they stay in eval mode whatever ``train()`` is called with (LatentNorm
    #: statistics, dropout and BatchNorm of a trained first stage must not change); ``None`` ones are skipped
    frozen: tuple[str, ...] = ()

    def frozen_stages(self) -> list[torch.nn.Module]:
        """The modules named in ``frozen`` that are set."""
        return [m for m in (getattr(self, name, None) for name in self.frozen) if m is not None]

    def freeze_stages(self) -> None:
        """``requires_grad_(False)`` and eval mode for every frozen stage (call once they are assigned)."""
        for module in self.frozen_stages():
            module.requires_grad_(False).eval()

    def train(self, mode: bool = True):
        """Only the trained networks switch mode; the frozen stages stay in eval mode."""
        super().train(mode)
        for module in self.frozen_stages():
            module.eval()
        return self

    #: registered name of the pipeline this stage trains (part of), e.g. ``"videogen.lamd.LaMD"``; when set,
    #: every checkpoint carries the pipeline record of ``pipeline_parts()`` (``videogen.core.persistence``)
    pipeline_name: str | None = None

    def pipeline_parts(self) -> dict[str, tuple[Any, str]]:
        """Pipeline component -> (this module's network, its ``state_dict`` prefix), e.g.
        ``{"dmg": (self.dmg, "dmg.")}``; ``None`` networks are left out."""
        return {}

    def pipeline_settings(self) -> dict[str, Any]:
        """Pipeline constructor settings this stage knows (e.g. ``{"diffusion": ...}``)."""
        return {}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Write the pipeline record, so that ``videogen.load_pretrained(ckpt)`` and the earlier-stage
        loaders rebuild the networks from the checkpoint alone (no pickled classes, no hyper-parameters)."""
        if self.pipeline_name is not None:
            from .persistence import CKPT_KEY, checkpoint_record

            checkpoint[CKPT_KEY] = checkpoint_record(self.pipeline_name, self.pipeline_parts(),
                                                     self.pipeline_settings())

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Refuse a checkpoint of another model or stage with a message naming both, before Lightning's
        ``load_state_dict`` fails with a list of missing keys."""
        state = checkpoint.get("state_dict", {})
        own = self.state_dict().keys()
        missing = [k for k in own if k not in state]
        if missing:
            hp = checkpoint.get("hyper_parameters", {})
            origin = hp.get("_class_path") or ", ".join(sorted({k.split(".")[0] for k
                                                                in state})[:6]) or "nothing"
            raise ValueError(
                f"this checkpoint is not one of {type(self).__name__}: it lacks {len(missing)} of its "
                f"{len(own)} weights (e.g. {missing[0]!r}); it holds {origin}. Give the checkpoint that this "
                "stage's recipe writes (its ModelCheckpoint dirpath).")

    def finite_or_skip(self, **terms: torch.Tensor) -> bool:
        """True when every loss term is finite.  Otherwise raise (``nan_policy="raise"``) naming the
        step and the terms, or count the step and return False (``"skip"``: the caller skips it)."""
        bad = [name for name, value in terms.items() if not bool(torch.isfinite(value.detach()).all())]
        if not bad:
            return True
        if self.nan_policy == "raise":
            values = ", ".join(f"{n}={float(terms[n].detach().float().mean())}" for n in bad)
            raise FloatingPointError(
                f"non-finite loss at global step {self.global_step} (epoch {self.current_epoch}): {values}. "
                "Lower the learning rate, enable gradient clipping or bf16 -> fp32, or set nan_policy: skip.")
        if self.trainer.world_size > 1:
            raise FloatingPointError(
                f"non-finite loss at global step {self.global_step}: {bad}; nan_policy 'skip' works on one "
                "device only (DDP ranks must take the same steps)")
        self.skipped_nonfinite += 1
        self.log("train/skipped_nonfinite", float(self.skipped_nonfinite), rank_zero_only=True)
        return False

    def scaled_lr(self, base_lr: float, scale_lr: bool) -> float:
        """``base_lr`` as given, or LDM-scaled by the trainer's devices, nodes, batch and accumulation; a
        learning rate that is not a finite positive number stops here, before the first step."""
        if not (isinstance(base_lr, (int, float)) and math.isfinite(base_lr) and base_lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {base_lr}")
        if not scale_lr:
            return base_lr
        trainer = self._trainer
        if trainer is None:
            raise RuntimeError("scale_lr needs a Trainer (the batch size and device count come from it)")
        batch = getattr(trainer.datamodule, "batch_size", None)
        if batch is None:
            raise ValueError("scale_lr needs the data module's batch_size (videogen.data.VideoDataModule has "
                             "it)")
        # Lightning's accumulation, or a manually optimised stage's own (AutoencoderGANStage.accumulate)
        accumulate = trainer.accumulate_grad_batches * int(getattr(self, "accumulate", 1))
        lr = effective_lr(base_lr, batch, trainer.num_devices, trainer.num_nodes, accumulate)
        if not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"scaled learning rate {lr} is not positive")
        return lr


@torch.no_grad()
def encode_items(items: Sequence[dict[str, Any]], encode: Callable[[torch.Tensor], dict[str, torch.Tensor]],
                 batch_size: int = 64) -> list[dict[str, Any]]:
    """Latent caching for later stages: each item's ``video`` is replaced by the per-item rows of
    ``encode(videos (B, C, T, H, W)) -> {name: (B, ...)}``, ``batch_size`` videos per call.

    A frozen first stage then runs once per video instead of once per training step (worth it on a CPU);
    the price is that the cached encodings are fixed (no fresh posterior sample each epoch).
    """
    out: list[dict[str, Any]] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        coded = encode(torch.stack([item["video"] for item in chunk]))
        for i, item in enumerate(chunk):
            out.append({**{k: v for k, v in item.items() if k != "video"},
                        **{k: v[i] for k, v in coded.items()}})
    return out
