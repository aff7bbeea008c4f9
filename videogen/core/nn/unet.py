"""The LDM UNet skeleton that :class:`~videogen.core.nn.UNet2D` and LVDM's ``UNet3D`` share.

``openaimodel.UNetModel`` lays its blocks out the same way in 2D and 3D: an input convolution; per
level ``num_res_blocks`` ResBlocks (each followed by attention where the downsample factor ``ds`` is in
``attention_resolutions``) and a Downsample between levels; a middle ResBlock-attention-ResBlock; per
level, from the deepest, ``num_res_blocks + 1`` ResBlocks fed by the skip connections (attention as in
the encoder) with an Upsample closing every level but the first.  :class:`UNetSkeleton` builds that
layout from per-model block factories and runs it; the names (``input_blocks.<i>.<j>``,
``middle_block.<j>``, ``output_blocks.<i>.<j>``) and the construction order (hence seeded
initialisation) are those of LDM, so checkpoints and parameter counts do not depend on this class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["UNetSkeleton"]


class UNetSkeleton(nn.Module):
    """Base of the LDM-layout UNets: builds and runs ``input_blocks``, ``middle_block``, ``output_blocks``.

    A subclass builds its embeddings, calls :meth:`build_skeleton` with its block factories, then
    builds its ``out`` head, and runs :meth:`run_skeleton` in ``forward``.
    """

    input_blocks: nn.ModuleList
    middle_block: nn.Module
    output_blocks: nn.ModuleList

    def build_skeleton(
        self,
        conv_in: nn.Module,
        model_channels: int,
        channel_mult: Sequence[int],
        num_res_blocks: int,
        attention_resolutions: Sequence[int],
        res: Callable[[int, int], nn.Module],
        attn: Callable[[int], nn.Module],
        down: Callable[[int], nn.Module],
        up: Callable[[int], nn.Module],
        group: Callable[..., nn.Module],
    ) -> int:
        """Build the three block lists and return the width at the output (``model_channels``).

        Args:
            conv_in: the input convolution (``input_blocks.0.0``).
            res: ``res(ch_in, ch_out)`` a ResBlock; ``attn(ch)`` the attention block at width ``ch``.
            down / up: ``down(ch)`` / ``up(ch)`` the resampling blocks between levels.
            group: wraps one block's layers, ``group(*layers)`` (e.g. ``TimestepEmbedSequential`` or
                ``nn.ModuleList`` of a list): the container kind is the subclass's.
        """
        self.input_blocks = nn.ModuleList([group(conv_in)])
        skip_chans, ch, ds = [model_channels], model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [res(ch, mult * model_channels)]
                ch = mult * model_channels
                if ds in attention_resolutions:
                    layers.append(attn(ch))
                self.input_blocks.append(group(*layers))
                skip_chans.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(group(down(ch)))
                skip_chans.append(ch)
                ds *= 2
        self.middle_block = group(res(ch, ch), attn(ch), res(ch, ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_chans.pop(), mult * model_channels)]
                ch = mult * model_channels
                if ds in attention_resolutions:
                    layers.append(attn(ch))
                if level and i == num_res_blocks:
                    layers.append(up(ch))
                    ds //= 2
                self.output_blocks.append(group(*layers))
        return ch

    def run_skeleton(self, x: torch.Tensor, run: Callable[[nn.Module, torch.Tensor], torch.Tensor]
                     ) -> torch.Tensor:
        """``x`` through the encoder, middle and decoder (skips concatenated on channels), before ``out``.

        ``run(block, h)`` applies one block (the subclass passes the embeddings and context, and decides
        on checkpointing).  ``x`` is ``(B, C, *spatial)``; the result ``(B, model_channels, *spatial)``.
        """
        hs, h = [], x
        for block in self.input_blocks:
            h = run(block, h)
            hs.append(h)
        h = run(self.middle_block, h)
        for block in self.output_blocks:
            h = torch.cat([h, hs.pop()], dim=1)  # skip connection on channels
            h = run(block, h)
        return h
