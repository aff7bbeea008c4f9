"""CLIPSIM: text-video alignment as the mean CLIP cosine similarity between a caption and each frame.

Protocol (CMD, VideoLDM): OpenAI CLIP ViT-B/32; every frame is resized to the model's input size
(224) and normalised with CLIP's mean/std; the cosine similarity between the L2-normalised text
embedding and each frame embedding is averaged over the frames of a video, then over videos. It is
reported as a raw cosine (about 0.3 for good models), not multiplied by 100 and not clipped at 0.

Weights come from a local open_clip state-dict file. For the OpenAI weights use the model name
``ViT-B-32-quickgelu`` (OpenAI trained with QuickGELU; plain ``ViT-B-32`` would load the same tensors
into GELU layers and give different numbers), e.g. ``open_clip_model.safetensors`` of the Hugging Face
repository ``timm/vit_base_patch32_clip_224.openai``. The tokenizer (CLIP's BPE vocabulary) ships inside
open_clip, so nothing is downloaded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from torch import nn
from torchmetrics import Metric

from videogen.core.metrics._frames import to_frames
from videogen.core.pretrained import resolve_weight_file
from videogen.core.video import check_video

__all__ = ["CLIPSimilarity", "clip_similarity_per_video", "load_open_clip", "preprocess_frames"]

DEFAULT_MODEL = "ViT-B-32-quickgelu"
DEFAULT_WEIGHTS = "open_clip_model.safetensors"
_HOW_TO_GET = (
    "For OpenAI CLIP ViT-B/32 download open_clip_model.safetensors from "
    "https://huggingface.co/timm/vit_base_patch32_clip_224.openai."
)


def load_open_clip(
    model_name: str = DEFAULT_MODEL, pretrained: str | os.PathLike | None = None
) -> tuple[nn.Module, Callable]:
    """Build ``model_name`` with open_clip, load a local checkpoint, return ``(model in eval, tokenizer)``.

    ``pretrained`` is the checkpoint file, a directory holding ``open_clip_model.safetensors``, or None
    (the videogen cache). ``model_name`` is any open_clip config name, including ones registered with
    ``open_clip.add_model_config``.
    """
    if model_name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {model_name!r} (see open_clip.list_models())")
    file = resolve_weight_file(pretrained, DEFAULT_WEIGHTS, _HOW_TO_GET)
    # An absolute path is never taken for a download tag; open_clip loads it with weights_only=True.
    model = open_clip.create_model(model_name, pretrained=str(file.resolve()), weights_only=True)
    return model.eval(), open_clip.get_tokenizer(model_name)


def _image_size_and_norm(model: nn.Module) -> tuple[tuple[int, int], tuple[float, ...], tuple[float, ...]]:
    """Input size and normalisation of an open_clip model's image tower (OpenAI's constants by default)."""
    size = model.visual.image_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    return size, tuple(cfg.get("mean", OPENAI_DATASET_MEAN)), tuple(cfg.get("std", OPENAI_DATASET_STD))


def preprocess_frames(
    frames: torch.Tensor,
    size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    resize: str = "center_crop",
) -> torch.Tensor:
    """Frames ``(N, 3, H, W)`` in [-1, 1] -> CLIP input ``(N, 3, *size)``.

    ``resize="center_crop"`` scales the short side to the input size and crops the centre (CLIP's own
    preprocessing); ``"direct"`` resizes to the input size, squashing non-square frames. Bicubic with
    antialiasing, as CLIP's PIL pipeline.
    """
    x = (frames.float() + 1.0) / 2.0  # [-1, 1] -> [0, 1]
    h, w = x.shape[-2:]
    if resize == "center_crop":
        scale = max(size[0] / h, size[1] / w)
        new = (max(size[0], math.ceil(h * scale - 1e-6)), max(size[1], math.ceil(w * scale - 1e-6)))
    elif resize == "direct":
        new = size
    else:
        raise ValueError(f"resize must be 'center_crop' or 'direct', got {resize!r}")
    if new != (h, w):
        x = F.interpolate(x, size=new, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    top, left = (new[0] - size[0]) // 2, (new[1] - size[1]) // 2
    x = x[..., top : top + size[0], left : left + size[1]]
    mean_t = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


@torch.no_grad()
def clip_similarity_per_video(
    model: nn.Module,
    tokenizer: Callable,
    videos: torch.Tensor,
    captions: Sequence[str],
    resize: str = "center_crop",
    frame_chunk: int = 64,
) -> torch.Tensor:
    """Mean over frames of cos(text embedding, frame embedding) for each video: ``-> (B,)`` float64."""
    check_video(videos, "videos")
    b, c, t = videos.shape[:3]
    if c != 3:
        raise ValueError(f"videos must be RGB (B, 3, T, H, W), got {tuple(videos.shape)}")
    if isinstance(captions, str) or len(captions) != b:
        raise ValueError(f"captions must be a list of {b} strings (one per video)")
    device = videos.device
    text = F.normalize(model.encode_text(tokenizer(list(captions)).to(device)).float(), dim=-1)  # (B, D)
    size, mean, std = _image_size_and_norm(model)
    frames = to_frames(videos)  # (B, C, T, H, W) -> (B*T, C, H, W)
    image = torch.cat(
        [
            model.encode_image(preprocess_frames(frames[i : i + frame_chunk], size, mean, std,
                                                 resize)).float()
            for i in range(0, frames.shape[0], frame_chunk)
        ]
    )
    image = F.normalize(image, dim=-1).view(b, t, -1)  # (B*T, D) -> (B, T, D)
    return torch.einsum("btd,bd->bt", image.double(), text.double()).mean(dim=1)


class CLIPSimilarity(Metric):
    """CLIPSIM: mean over videos of the frame-averaged text-frame cosine similarity (raw, not x100).

    Args:
        model: an open_clip model name (loaded from ``pretrained``) or an already built
            ``(model, tokenizer)`` pair.
        pretrained: local checkpoint file or directory (see :func:`load_open_clip`).
        resize: ``"center_crop"`` (CLIP's preprocessing) or ``"direct"``.
        frame_chunk: frames per image-encoder call.

    ``update(videos, captions)``: ``(B, 3, T, H, W)`` in [-1, 1] and B caption strings.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        model: str | tuple[nn.Module, Callable] = DEFAULT_MODEL,
        pretrained: str | os.PathLike | None = None,
        resize: str = "center_crop",
        frame_chunk: int = 64,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if resize not in ("center_crop", "direct"):
            raise ValueError(f"resize must be 'center_crop' or 'direct', got {resize!r}")
        clip_model, self.tokenizer = load_open_clip(model, pretrained) if isinstance(model, str) else model
        self.clip_model = clip_model.eval().requires_grad_(False)
        self.resize, self.frame_chunk = resize, frame_chunk
        self.add_state("score_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_videos", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def train(self, mode: bool = True) -> CLIPSimilarity:
        """The metric may follow its parent into train mode; the CLIP model stays in eval mode."""
        super().train(mode)
        self.clip_model.eval()
        return self

    def update(self, videos: torch.Tensor, captions: Sequence[str]) -> None:
        scores = clip_similarity_per_video(
            self.clip_model, self.tokenizer, videos, captions, self.resize, self.frame_chunk
        )
        self.score_sum += scores.sum()
        self.num_videos += scores.numel()

    def compute(self) -> torch.Tensor:
        if self.num_videos == 0:
            raise RuntimeError("CLIPSimilarity.compute() called before any update()")
        return self.score_sum / self.num_videos
