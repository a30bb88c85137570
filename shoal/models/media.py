"""Media inputs for any model: each image or sound in the dense input becomes a vector, then the model runs.

A batch carries media flattened at the end of its dense part (:mod:`shoal.data.features.media`). :class:`WithMedia`
wraps a registered model built for the narrower dense input of [plain dense values, one vector per media
feature]: it cuts each media block out, reshapes it to (B, C, H, W), encodes it (an image with
:class:`~shoal.models.vision.ImageEncoder`, a spectrogram with :class:`~shoal.models.audio.SpectrogramCNN`)
and hands the vectors to the model beside the dense values::

    dense (B, D) = [ plain (B, P) | image (B, C*H*W) | sound (B, 1*M*T) ]
                        │              │ view (B, C, H, W)   │ view (B, 1, M, T)
                        │         ResNet (B, d1)        CNN (B, d2)
                        └──────────────┴──────────────┬─────┘
                                  model([plain | v1 | v2] (B, P + d1 + d2), ids, offsets)

So an image, ids and numbers train together in every model: ``mlp`` concatenates the vectors with the
embeddings, ``dlrm`` feeds them through its bottom MLP into the dot interactions, and so on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from shoal.data.features.media import MediaInput
from shoal.models.audio import SpectrogramCNN
from shoal.models.vision import ImageEncoder

__all__ = ["WithMedia", "media_encoder", "plain_width"]


def media_encoder(m: MediaInput) -> nn.Module:
    """The network that turns one media feature into a vector of ``widths[-1]`` values."""
    if m.kind == "image":
        return ImageEncoder(m.shape[0], m.widths, m.blocks, m.augment, m.flip)
    if m.kind == "audio":
        return SpectrogramCNN(m.widths, m.blocks, m.augment)
    raise ValueError(f"media input of kind {m.kind!r} has no encoder; known kinds: image, audio")


def plain_width(dense_dim: int, media: Sequence[MediaInput]) -> int:
    """The dense values before the media blocks; refuses a ``dense_dim`` too small to hold them."""
    plain = dense_dim - sum(m.size for m in media)
    if plain < 0:
        raise ValueError(f"dense_dim {dense_dim} cannot hold media inputs of {sum(m.size for m in media)} values")
    return plain


class WithMedia(nn.Module):
    """``model`` over [plain dense values, one vector per media input], from the full dense input."""

    def __init__(self, model: nn.Module, dense_dim: int, media: Sequence[MediaInput]) -> None:
        super().__init__()
        self.model = model
        self.media = list(media)
        self.plain = plain_width(dense_dim, media)
        self.encoders = nn.ModuleList(media_encoder(m) for m in self.media)

    def forward(self, dense: torch.Tensor, ids: list[torch.Tensor], offsets: list[torch.Tensor]) -> torch.Tensor:
        parts = [dense[:, : self.plain]] if self.plain else []  # (B, P); no empty slice to trace
        start = self.plain
        whole = not self.plain and len(self.media) == 1  # the one block is the whole dense tensor: no slice to trace
        for m, encoder in zip(self.media, self.encoders, strict=True):
            block = (dense if whole else dense[:, start:start + m.size]).reshape(-1, *m.shape)  # (B, C, H, W)
            parts.append(encoder(block))  # (B, widths[-1])
            start += m.size
        joined = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]  # (B, P + sum of vector widths)
        return self.model(joined, ids, offsets)
