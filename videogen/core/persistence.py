"""One persistence format for every network and pipeline, and one loader.

* A **network** (:class:`SavableModule`) is a directory with ``config.json`` (``{"class": <registered
  name>, **constructor arguments}``) and ``model.safetensors``. The constructor arguments are recorded
  automatically when the network is built (huggingface_hub's :class:`~huggingface_hub.ModelHubMixin`
  does the recording, and gives ``push_to_hub``); no class writes its config by hand.
* A **pipeline** (:class:`PipelineMixin`, e.g. ``LaMD``, ``CMD``, ``LVDM``) is a directory with one
  index file, ``model_index.json``: ``{"class": <registered name>, "components": {name: <registered
  class name> | null}, "config": {setting: value}}``, and one sub-directory per component. A component
  is a network as above, or a diffusers / transformers directory for pretrained parts (SD UNet, SD VAE,
  text encoders), each written by the component's own ``save_pretrained``. A pipeline's constructor
  takes its components and settings by name, so loading is ``cls(**components, **config)``.
* A **Lightning checkpoint** of a stage that makes (part of) a pipeline carries ``checkpoint[CKPT_KEY]``
  (``"videogen_pipeline"``): the pipeline class, its settings and, per component, its class, its
  architecture config and the ``state_dict`` prefix of its weights. :func:`load_pretrained` builds the
  pipeline from one such checkpoint, or from several (CMD's content and motion stages) whose parts it
  merges.

Nothing is imported because a file names it: classes are looked up in a registry of videogen's own
classes (and any a user adds with :func:`register`), checked against the kind the slot needs.
Directories written by videogen before this format (``lamd_config.json`` and the like) are not read:
the library is unreleased and they need no migration.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from huggingface_hub import ModelHubMixin

from .files import TEMP_MARK, remove_stale_temporaries, temporary_tag

__all__ = ["CKPT_KEY", "CONFIG_NAME", "INDEX_NAME", "WEIGHTS_NAME", "PipelineMixin", "SavableModule",
           "UnknownClassError", "checkpoint_record", "component_record", "load_component", "load_pretrained",
           "read_foreign_checkpoint", "register", "registered_name", "resolve_class", "safe_load",
           "write_directory", "ForeignObject", "FOREIGN_GLOBALS"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model_index.json"
CKPT_KEY = "videogen_pipeline"

#: registered name -> class.  Names are ``<package>.<ClassName>`` (``videogen.lamd.MCDVAE``): they survive
#: moving a class between the files of its package.
_REGISTRY: dict[str, type] = {}
#: videogen's own packages -> modules to import to find a ``videogen.*`` name not registered yet (classes
#: register themselves when defined; the model packages export lazily, so an attribute lookup imports)
_OWN_PACKAGES = {"videogen.core": ("videogen.core.sd", "videogen.core.text"),
                 "videogen.lamd": ("videogen.lamd",), "videogen.cmd": ("videogen.cmd",),
                 "videogen.lvdm": ("videogen.lvdm",), "videogen.toy": ("videogen.toy",)}


class UnknownClassError(ValueError):
    """A file names a class that is not registered (or not of the kind its slot needs)."""


def registered_name(cls: type) -> str:
    """``<package>.<ClassName>``: the module path without its last part for videogen's own files
    (``videogen.lamd.mcdvae.MCDVAE`` -> ``videogen.lamd.MCDVAE``), the full path for anything else."""
    module = cls.__module__
    if module.startswith("videogen.") and module.count(".") >= 2:
        module = module.rsplit(".", 1)[0]
    return f"{module}.{cls.__qualname__}"


def register(cls: type, name: str | None = None) -> type:
    """Allow ``cls`` to be named in saved directories and checkpoints (videogen's classes register
    themselves; call this for your own pipeline or network class before loading a folder that names it)."""
    _REGISTRY[name or registered_name(cls)] = cls
    return cls


def resolve_class(name: Any, base: type, what: str = "class") -> type:
    """The registered class called ``name``, which must be a subclass of ``base``; never imports a
    module a file names, except videogen's own packages (whose classes register on definition)."""
    if not isinstance(name, str):
        raise UnknownClassError(f"{what} must be a registered class name, got {name!r}")
    cls = _REGISTRY.get(name)
    if cls is None and "." in name:
        package, _, attr = name.rpartition(".")
        for module in _OWN_PACKAGES.get(package, ()):
            with contextlib.suppress(ImportError, AttributeError):
                getattr(importlib.import_module(module), attr, None)
            cls = _REGISTRY.get(name)
    if cls is None:
        raise UnknownClassError(f"{what} {name!r} is not a registered videogen class (register your own with "
                                "videogen.core.persistence.register before loading)")
    if not issubclass(cls, base):
        raise UnknownClassError(f"{what} {name!r} is a {cls.__name__}, not a {base.__name__}")
    return cls


def _json_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config as JSON reads it back (tuples become lists), so saved and live configs compare equal."""
    return json.loads(json.dumps(config))


@contextlib.contextmanager
def write_directory(directory: str | os.PathLike):
    """Yield a fresh temporary directory beside ``directory``; on success it replaces ``directory`` as a
    whole (an interrupted save leaves the old folder, or none, never a mix of old and new files), and the
    temporary folders that killed saves of it left are removed (``remove_stale_temporaries``)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{directory.name}{TEMP_MARK}{temporary_tag()}."  # a killed save's leftover names its process
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=directory.parent))
    try:
        yield tmp
        old = None
        if directory.exists():
            old = directory.parent / f".{directory.name}.old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            directory.rename(old)
        tmp.rename(directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        remove_stale_temporaries(directory.parent, directory.name)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable JSON {what}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object ({what})")
    return data


def _local_dir(name_or_path: str | os.PathLike, must_have: str, what: str) -> Path:
    """A local directory holding ``must_have``: the path itself, or a hub id already in the HF cache."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / must_have).is_file():
            raise FileNotFoundError(f"{path / must_have} not found: {path} is not a {what} directory")
        return path
    if path.exists():
        raise FileNotFoundError(f"{path} is a file, not a {what} directory")
    text = str(name_or_path)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(text, local_files_only=True))
        except Exception:  # noqa: BLE001 - any hub failure means "not in the cache"
            pass
    raise FileNotFoundError(f"{what} {text} not found: give a directory written by save_pretrained (with "
                            f"{must_have}), or a hub id already in the Hugging Face cache (videogen never "
                            "downloads)")


def safe_load(path: str | os.PathLike, what: str = "checkpoint", map_location: str | Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors, numbers, strings and containers only, never code.

    Any failure is one ``ValueError`` naming the file and, for a refused pickle, the Python object it
    holds (torch's own message would suggest ``weights_only=False``, which videogen never does)."""
    import re

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unreadable, truncated or refused: one clear message
        text = str(exc)
        found = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"Unsupported global: ([\w.]+)", text)
        if found:
            reason = (f"it holds the Python object {found.group(1)}, which videogen does not unpickle "
                      "(it could run code)")
        else:
            reason = (text.strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ValueError(f"{path} is not a readable {what}: {reason}") from None


class ForeignObject:
    """An inert stand-in for an object of another program's class inside a checkpoint (an OmegaConf
    config, a PyTorch Lightning callback key): it records the arguments and state it was given and runs
    nothing. ``foreign_name`` is the class the file named."""

    foreign_name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.foreign_name} (not unpickled)>"


#: classes the official LVDM (Lightning 1.4 + OmegaConf) and CMD (argparse) checkpoints carry besides
#: tensors.  They are read as :class:`ForeignObject` (never imported, never run); ``argparse.Namespace``
#: is the real class (a plain attribute holder).
FOREIGN_GLOBALS = (
    "omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig", "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata", "omegaconf.nodes.AnyNode", "omegaconf.nodes.StringNode",
    "omegaconf.nodes.IntegerNode", "omegaconf.nodes.FloatNode", "omegaconf.nodes.BooleanNode",
    "omegaconf.nodes.ValueNode", "typing.Any", "builtins.dict", "builtins.list", "builtins.object",
    "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
    "pytorch_lightning.callbacks.lr_monitor.LearningRateMonitor",
    "pytorch_lightning.callbacks.early_stopping.EarlyStopping",
    "pytorch_lightning.utilities.parsing.AttributeDict", "lightning_fabric.utilities.data.AttributeDict",
    "pathlib.PosixPath", "pathlib.WindowsPath", "numpy.core.multiarray.scalar", "numpy.dtype",
    "numpy._core.multiarray.scalar",
)


def _foreign_allowlist() -> list[Any]:
    import argparse

    stubs = [(type(name.rsplit(".", 1)[1], (ForeignObject,), {"foreign_name": name}), name)
             for name in FOREIGN_GLOBALS]
    return [argparse.Namespace, *stubs]


def read_foreign_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """Read a checkpoint written by another program (the official LVDM or CMD code) without running
    code from it: ``torch.load(weights_only=True)`` with :data:`FOREIGN_GLOBALS` allowed as inert
    :class:`ForeignObject` stand-ins and ``argparse.Namespace``.  Any other Python object in the file
    is refused in one ``ValueError`` that names it (and every other global the file holds)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} " + ("is not a file" if path.exists() else "not found"))
    with torch.serialization.safe_globals(_foreign_allowlist()):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - unreadable, truncated or refused: one clear message
            try:
                names = [n for n in torch.serialization.get_unsafe_globals_in_checkpoint(path)
                         if n not in FOREIGN_GLOBALS and n != "argparse.Namespace"]
            except Exception:  # noqa: BLE001 - not a zip/pickle at all
                names = []
            if names:
                reason = (f"it holds the Python object(s) {', '.join(sorted(names))}, which videogen does "
                          "not unpickle (they could run code)")
            else:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ValueError(f"{path} is not a readable {what}: {reason}") from None


# ----------------------------------------------------------------------------- networks


class SavableModule(ModelHubMixin):
    """``save_pretrained`` / ``from_pretrained`` for a network (an ``nn.Module`` subclass that mixes this
    in): ``config.json`` (registered class name + the constructor arguments, recorded when it was built)
    and ``model.safetensors``. Loading is strict and checks the class, so a directory of another network
    is refused by name. Constructor arguments must be JSON values (numbers, strings, lists, dicts, None).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register(cls)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments (defaults included) as JSON values: ``type(self)(**config)`` rebuilds
        the architecture."""
        return _json_config(getattr(self, "_hub_mixin_config", None) or {})

    # the component protocol (see PipelineMixin) ----------------------------------------------------
    def component_config(self) -> dict[str, Any]:
        return self.config

    @classmethod
    def from_component_config(cls, config: dict[str, Any]) -> Any:
        return cls(**config)

    def _save_pretrained(self, save_directory: Path) -> None:
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k,
                 v in self.state_dict().items()}  # type: ignore[attr-defined]
        save_file(state, str(save_directory / WEIGHTS_NAME))
        (save_directory / CONFIG_NAME).write_text(
            json.dumps({"class": registered_name(type(self)), **self.config}, indent=2))

    def save_pretrained(self, save_directory: str | os.PathLike,
                        **kwargs: Any) -> Path:  # type: ignore[override]
        """Write the directory (replacing an existing one as a whole); ``push_to_hub=True`` etc. as in
        huggingface_hub."""
        with write_directory(save_directory) as tmp:
            super().save_pretrained(tmp, **kwargs)
        return Path(save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike,  # type: ignore[override]
                        map_location: str | Any = "cpu", **_: Any) -> Any:
        """Load a directory written by :meth:`save_pretrained` (a local path or a hub id in the HF cache)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        directory = _local_dir(pretrained_model_name_or_path, CONFIG_NAME, cls.__name__)
        if not (directory / WEIGHTS_NAME).is_file():
            raise FileNotFoundError(f"{directory / WEIGHTS_NAME} not found: expected a "
                                    f"{cls.__name__}.save_pretrained directory")
        config = _read_json(directory / CONFIG_NAME, f"{cls.__name__} config")
        saved = config.pop("class", None)
        if saved is None or resolve_class(saved, SavableModule, "network class") is not cls:
            raise ValueError(f"{directory} holds a {saved}, not a {registered_name(cls)}")
        model = cls(**config)
        try:
            state = load_file(str(directory / WEIGHTS_NAME), device=str(map_location))
        except (SafetensorError, OSError) as exc:
            raise ValueError(f"{directory / WEIGHTS_NAME} is not a readable safetensors file: "
                             f"{exc}") from None
        model.load_state_dict(state)  # type: ignore[attr-defined]
        return model


# ----------------------------------------------------------------------------- pipelines


def _component_class(obj: Any) -> str:
    name = registered_name(type(obj))
    if _REGISTRY.get(name) is not type(obj):
        raise TypeError(f"component {type(obj).__name__} is not a registered videogen class (register it "
                        "first)")
    return name


def component_record(obj: Any, prefix: str) -> dict[str, Any]:
    """What a checkpoint keeps of one component: its class, architecture config and state-dict prefix."""
    return {"class": _component_class(obj), "config": obj.component_config(), "prefix": prefix}


class PipelineMixin(ModelHubMixin):
    """Persistence of an inference pipeline: ``save_pretrained`` / ``from_pretrained`` / checkpoints.

    A subclass lists its ``components``: constructor parameter -> attribute holding it (same name by
    default). Every other constructor argument is a setting, recorded automatically when the pipeline is
    built and written to ``model_index.json`` with the component classes (module docstring).
    """

    components: dict[str, str] = {}
    #: component -> how to get it when a set of checkpoints lacks it (names the recipe that trains it)
    component_hints: dict[str, str] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register(cls)

    def pipeline_config(self) -> dict[str, Any]:
        """The settings: constructor arguments that are not components, as JSON values."""
        recorded = getattr(self, "_hub_mixin_config", None) or {}
        return _json_config({k: v for k, v in recorded.items() if k not in self.components})

    def _parts(self) -> dict[str, Any]:
        return {name: getattr(self, attr) for name, attr in self.components.items()}

    def _save_pretrained(self, save_directory: Path) -> None:
        parts = self._parts()
        attrs = set(self.components.values())
        loose = [k for k in self.state_dict() if k.split(".")[0] not in attrs]  # type: ignore[attr-defined]
        if loose:
            raise TypeError(f"{type(self).__name__} has weights outside its components "
                            f"({', '.join(loose[:3])}): keep every network in a component so that "
                            "save_pretrained writes it")
        for name, part in parts.items():
            if part is not None:
                _component_class(part)
                part.save_pretrained(save_directory / name)
        index = {"class": registered_name(type(self)),
                 "components": {n: None if p is None else _component_class(p) for n, p in parts.items()},
                 "config": self.pipeline_config()}
        (save_directory / INDEX_NAME).write_text(json.dumps(index, indent=2))

    def save_pretrained(self, save_directory: str | os.PathLike,
                        **kwargs: Any) -> Path:  # type: ignore[override]
        """Write the pipeline directory (replacing an existing one as a whole; ``push_to_hub=True`` as in
        huggingface_hub)."""
        with write_directory(save_directory) as tmp:
            super().save_pretrained(tmp, config={}, **kwargs)
            (tmp / CONFIG_NAME).unlink(missing_ok=True)  # the index is the only config
        return Path(save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike,  # type: ignore[override]
                        map_location: str | Any = "cpu", **_: Any) -> Any:
        """Load a directory written by :meth:`save_pretrained` (the class must be ``cls`` or a subclass)."""
        directory = _local_dir(pretrained_model_name_or_path, INDEX_NAME, f"{cls.__name__} pipeline")
        index = _read_json(directory / INDEX_NAME, "pipeline index")
        pipe_cls = resolve_class(index.get("class"), cls, "pipeline class")
        components = {}
        for name, class_name in (index.get("components") or {}).items():
            if name not in pipe_cls.components:
                raise ValueError(f"{directory / INDEX_NAME} names a component {name!r} that "
                                 f"{pipe_cls.__name__} does not have")
            components[name] = None if class_name is None else \
                _component_loader(class_name).from_pretrained(directory / name, map_location=map_location)
        return pipe_cls._build(components, index.get("config") or {}, map_location)

    @classmethod
    def _build(cls, components: dict[str, Any], config: dict[str, Any], map_location: Any) -> Any:
        try:
            pipe = cls(**components, **config)
        except TypeError as exc:
            raise ValueError(f"cannot build {cls.__name__} from the saved components and settings: "
                             f"{exc}") from None
        return pipe.to(map_location).eval()

    @classmethod
    def required_components(cls) -> tuple[str, ...]:
        """Components the constructor cannot do without (no default)."""
        import inspect

        params = inspect.signature(cls.__init__).parameters
        return tuple(n for n in cls.components if n in params and params[n].default
                     is inspect.Parameter.empty)

    @classmethod
    def from_checkpoints(cls, *paths: str | os.PathLike, map_location: str | Any = "cpu",
                         **settings: Any) -> Any:
        """The pipeline from final-stage Lightning checkpoints (see :func:`load_checkpoints`); ``settings``
        override the recorded ones (e.g. ``video_size``)."""
        pipe = load_checkpoints(*paths, map_location=map_location, settings=settings)
        if not isinstance(pipe, cls):
            raise ValueError(f"{paths[0]} holds a {type(pipe).__name__}, not a {cls.__name__}")
        return pipe

    # ---- checkpoints -------------------------------------------------------------------------------
    @classmethod
    def checkpoint_record(cls, components: dict[str, tuple[Any, str]],
                          config: dict[str, Any]) -> dict[str, Any]:
        """``checkpoint[CKPT_KEY]`` of a stage of this pipeline (see :func:`checkpoint_record`)."""
        return checkpoint_record(registered_name(cls), components, config)


def checkpoint_record(pipeline: str, components: dict[str, tuple[Any, str]], config: dict[str, Any]
                      ) -> dict[str, Any]:
    """``checkpoint[CKPT_KEY]`` for a stage of the pipeline registered as ``pipeline``, holding
    ``components`` (name -> (module, state-dict prefix)) and knowing the pipeline settings ``config``;
    several stages' records of one pipeline merge on loading."""
    return {"class": pipeline, "config": _json_config(config),
            "components": {n: component_record(m, p) for n, (m, p) in components.items() if m is not None}}


def load_component(path: str | os.PathLike, name: str, base: type, map_location: str | Any = "cpu") -> Any:
    """One trained network: a ``save_pretrained`` directory of ``base``, or the component ``name`` of the
    pipeline record in a stage's Lightning checkpoint (how stage 2 loads stage 1)."""
    from .pretrained import submodule_state

    path = Path(path)
    if path.is_dir():
        return base.from_pretrained(path, map_location=map_location)
    (ckpt,), (record,) = _load_checkpoint_files([path])
    comp = (record.get("components") or {}).get(name)
    if comp is None:
        held = ", ".join(sorted(record.get("components") or {})) or "nothing"
        raise ValueError(f"{path} has no {name} (it is a checkpoint of {record.get('class')} holding {held})")
    cls = resolve_class(comp.get("class"), base, f"{name} class")
    module = cls.from_component_config(comp["config"])
    try:
        module.load_state_dict(submodule_state(ckpt, comp["prefix"]))
    except RuntimeError as exc:
        raise ValueError(f"{path}: the {name} weights do not fit its recorded config: "
                         f"{str(exc).splitlines()[0]}") from None
    return module.to(map_location)


def _component_loader(class_name: str) -> Any:
    cls = _REGISTRY.get(class_name) or resolve_class(class_name, object, "component class")
    if not (hasattr(cls, "from_pretrained") and hasattr(cls, "from_component_config")):
        raise UnknownClassError(f"component class {class_name!r} cannot be loaded (no from_pretrained)")
    return cls


def _merge_records(paths: list[Path], records: list[dict[str, Any]]) -> dict[str, Any]:
    """One pipeline record from several stages' checkpoints (same class; settings agree where shared)."""
    merged: dict[str, Any] = {"class": records[0]["class"], "config": {}, "components": {}, "source": {}}
    for path, rec in zip(paths, records):
        if rec.get("class") != merged["class"]:
            raise ValueError(f"{path} is a checkpoint of {rec.get('class')}, {paths[0]} of "
                             f"{merged['class']}: give checkpoints of one model")
        for key, value in (rec.get("config") or {}).items():
            if key in merged["config"] and merged["config"][key] != value:
                raise ValueError(f"{path} and {paths[0]} disagree on {key!r} ({value!r} vs "
                                 f"{merged['config'][key]!r})")
            merged["config"][key] = value
        for name, comp in (rec.get("components") or {}).items():  # a later checkpoint's part wins
            merged["components"][name] = comp
            merged["source"][name] = path
    return merged


def _load_checkpoint_files(paths: list[Path]) -> tuple[list[dict], list[dict]]:

    ckpts, records = [], []
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} not found"
                                    + (" (it is a directory)" if path.is_dir() else ""))
        ckpt = safe_load(path, "videogen checkpoint")
        record = ckpt.get(CKPT_KEY) if isinstance(ckpt, dict) else None
        if not isinstance(record, dict):
            raise ValueError(f"{path} is not a videogen stage checkpoint: it has no {CKPT_KEY!r} entry")
        ckpts.append(ckpt)
        records.append(record)
    return ckpts, records


def load_checkpoints(*paths: str | os.PathLike, map_location: str | Any = "cpu",
                     settings: dict[str, Any] | None = None) -> Any:
    """The pipeline from one or more final-stage Lightning checkpoints (EMA weights when the EMA callback
    ran: they are what the checkpoint's ``state_dict`` holds). Several checkpoints of one model (CMD's
    content and motion stages) contribute their parts; where two hold the same part (a frozen autoencoder or
    text encoder), the later one gives it."""
    from .pretrained import submodule_state

    files = [Path(p) for p in paths]
    ckpts, records = _load_checkpoint_files(files)
    merged = _merge_records(files, records)
    pipe_cls = resolve_class(merged["class"], PipelineMixin, "pipeline class")
    by_path = {path: ckpt for path, ckpt in zip(files, ckpts)}
    components: dict[str, Any] = {}
    for name, comp in merged["components"].items():
        loader = _component_loader(comp["class"])
        module = loader.from_component_config(comp["config"])
        state = submodule_state(by_path[merged["source"][name]], comp["prefix"])
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"{merged['source'][name]}: the {name} weights do not fit its recorded config: "
                             f"{str(exc).splitlines()[0]}") from None
        components[name] = module
    missing = [n for n in pipe_cls.required_components() if n not in components]
    if missing:
        hints = "; ".join(f"{n}: "
                          + pipe_cls.component_hints.get(n, "give the checkpoint of the stage that trains it")
                          for n in missing)
        raise ValueError(f"{', '.join(str(f) for f in files)}: {pipe_cls.__name__} also needs "
                         f"{', '.join(missing)} ({hints})")
    return pipe_cls._build(components, {**merged["config"], **(settings or {})}, map_location)


def load_pretrained(*sources: str | os.PathLike, map_location: str | Any = "cpu") -> Any:
    """Any videogen pipeline from a ``save_pretrained`` directory (``model_index.json``), a hub id in the
    HF cache, or one or more final-stage ``.ckpt`` files (module docstring)."""
    if not sources:
        raise ValueError("give a save_pretrained directory or final-stage checkpoint(s)")
    paths = [Path(s).expanduser() for s in sources]
    if len(paths) == 1 and not paths[0].is_file():
        return PipelineMixin.from_pretrained(sources[0], map_location=map_location)
    return load_checkpoints(*paths, map_location=map_location)

