"""uint8 clips stay channels-last from the decoder to the device: ``resize_frames`` is
``resize_center_crop`` in the decoded ``(T, H, W, C)`` layout (same values), a uint8 item is a ``(C, T,
H, W)`` view of its frames, ``videogen.data.collate`` stacks such views without de-interleaving them
(values equal to ``default_collate``, in a worker's shared memory too), and ``on_after_batch_transfer``
turns the batch into the contiguous float batch a float dataset gives."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from videogen.core.video import resize_center_crop, resize_frames
from videogen.data import JsonCaptionVideos, VideoDataModule, collate


@pytest.mark.parametrize("shape,size", [((5, 24, 40, 3), 16), ((5, 24, 40, 3), (20, 30)),
                                        ((3, 12, 10, 3), (16, 16)), ((4, 16, 32, 3), (16, 24)),
                                        ((4, 16, 32, 3), (16, 32))])
def test_resize_frames_is_resize_center_crop_in_the_decoded_layout(shape, size):
    frames = torch.randint(0, 256, shape, dtype=torch.uint8)  # (T, H, W, C)
    ours = resize_frames(frames, size)
    reference = resize_center_crop(frames.permute(3, 0, 1, 2), size).permute(1, 2, 3, 0)
    assert ours.is_contiguous() and torch.equal(ours, reference)
    with pytest.raises(ValueError, match=r"uint8 \(T, H, W, C\)"):
        resize_frames(frames.float(), size)


@pytest.fixture
def clips(tmp_path, make_video):
    names = []
    for i in range(3):
        make_video(tmp_path / f"{i}.mp4", num_frames=8, h=16, w=32)
        names.append({"video": f"{i}.mp4", "caption": f"clip {i}"})
    (tmp_path / "list.json").write_text(json.dumps(names))
    return lambda **kw: JsonCaptionVideos(tmp_path, tmp_path / "list.json", num_frames=4, start="first", **kw)


@pytest.mark.parametrize("size", [None, (16, 32), 12])
def test_uint8_items_collate_channels_last_with_the_default_values(clips, size):
    data = clips(dtype="uint8", size=size)
    items = [data[i] for i in range(3)]
    assert all(not it["video"].is_contiguous() and it["video"].movedim(0, -1).is_contiguous() for it in items)
    batch, reference = collate(items), default_collate(items)
    assert batch.keys() == reference.keys() and batch["caption"] == reference["caption"]
    assert torch.equal(batch["video"], reference["video"]) and torch.equal(batch["index"], reference["index"])
    assert batch["video"].movedim(1, -1).is_contiguous()  # one (B, T, H, W, C) block
    floats = collate([clips(size=size)[i] for i in range(3)])["video"]  # float items: the default collation
    assert floats.is_contiguous() and floats.dtype == torch.float32
    mixed = [items[0]["video"], items[1]["video"].contiguous()]  # not all channels-last: the default
    assert collate(mixed).is_contiguous() and torch.equal(collate(mixed), default_collate(mixed))


def test_a_worker_collates_into_shared_memory_and_the_module_gets_the_float_batch(clips):
    from videogen.core.training import TrainingModule

    data = clips(dtype="uint8", size=(16, 32))
    loader = DataLoader(data, batch_size=3, num_workers=1, collate_fn=collate)
    batch = next(iter(loader))
    assert torch.equal(batch["video"], default_collate([data[i] for i in range(3)])["video"])
    assert batch["video"].movedim(1, -1).is_contiguous()
    module = VideoDataModule(data, batch_size=3)
    module.setup()
    assert module.train_dataloader().collate_fn is collate
    on_device = TrainingModule.on_after_batch_transfer(TrainingModule(), dict(batch), 0)
    expected = default_collate([clips(size=(16, 32))[i] for i in range(3)])["video"]
    assert on_device["video"].is_contiguous() and torch.equal(on_device["video"], expected)
