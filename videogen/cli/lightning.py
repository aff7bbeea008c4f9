"""``VideogenCLI``: LightningCLI with the library's defaults (``videogen fit|validate|test|predict``),
built on first use so that lightning loads lazily."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .parsers import SEED_DEFAULT

__all__ = ["videogen_cli_class"]


def videogen_cli_class() -> type:
    """Build ``VideogenCLI`` (a LightningCLI subclass) on first use, so that lightning loads lazily."""
    from lightning.pytorch.cli import LightningCLI

    class VideogenCLI(LightningCLI):
        """LightningCLI with the library's defaults: subclass mode for model and data, seed 0, strict keys.

        jsonargparse rejects unknown keys by default; this class keeps it that way (no
        ``parser_mode``/``exit_on_error`` relaxation), so a typo in a recipe stops the run.
        """

        def __init__(self, args: Sequence[str] | None = None, **kwargs: Any) -> None:
            from lightning.pytorch import LightningDataModule, LightningModule

            kwargs = {
                "model_class": LightningModule,
                "datamodule_class": LightningDataModule,
                "subclass_mode_model": True,
                "subclass_mode_data": True,
                "seed_everything_default": SEED_DEFAULT,
                # SaveConfigCallback refuses to overwrite config.yaml of an earlier run otherwise.
                "save_config_kwargs": {"overwrite": True},
                # exit_on_error=False: a bad recipe key or value raises ArgumentError, which main() prints
                # as one "videogen: error:" line (strictness is unchanged)
                "parser_kwargs": {"prog": "videogen", "exit_on_error": False},
                **kwargs,
            }
            super().__init__(args=args, **kwargs)

        def _parse_ckpt_path(self) -> None:
            """Check ``--ckpt_path`` before Lightning reads it: a missing path, a folder or a FIFO, a file
            that is not a readable checkpoint (read with ``weights_only=True``), or one whose recorded
            class is not the recipe's model class ends in one error line; no class a checkpoint names
            is imported (Lightning's own parsing would import ``hyper_parameters._class_path``)."""
            import stat

            from videogen.core.persistence import safe_load

            sub = self.config.get("subcommand")
            ckpt_path = self.config[sub].get("ckpt_path") if sub else None
            if not ckpt_path or str(ckpt_path) in ("last", "best", "hpc", "registry"):
                return
            path = Path(ckpt_path)
            if not path.exists():
                raise FileNotFoundError(f"--ckpt_path {path} not found")
            if path.is_dir():
                raise IsADirectoryError(f"--ckpt_path {path} is a folder: give the .ckpt file")
            if not stat.S_ISREG(path.stat().st_mode):
                raise ValueError(f"--ckpt_path {path} is not a regular file")
            ckpt = safe_load(path, "checkpoint (--ckpt_path)")
            hparams = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
            named = hparams.get("_class_path")
            model = self.config[sub].get("model")
            wanted = model.get("class_path") if hasattr(model, "get") else None
            if named is not None and wanted is not None and named != wanted:
                raise ValueError(f"--ckpt_path {path} is a checkpoint of {named}, not of the recipe's model "
                                 f"{wanted}")
            super()._parse_ckpt_path()

        def before_instantiate_classes(self) -> None:
            """A GPU accelerator on a machine without one ends in one error line, before anything is built."""
            import torch

            sub = self.config.get("subcommand")
            trainer = self.config[sub].get("trainer") if sub else None
            accelerator = str(trainer.get("accelerator", "")) if trainer is not None else ""
            if accelerator in ("cuda", "gpu") and not torch.cuda.is_available():
                raise ValueError(f"--trainer.accelerator={accelerator}: no CUDA device is available here "
                                 "(use cpu)")

        def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
            """Lightning restores ``--ckpt_path`` with ``weights_only=True`` unless the recipe says otherwise
            (its own default unpickles anything the file holds)."""
            kwargs = super()._prepare_subcommand_kwargs(subcommand)
            if kwargs.get("ckpt_path") and kwargs.get("weights_only") is None:
                kwargs["weights_only"] = True
            return kwargs

    return VideogenCLI
