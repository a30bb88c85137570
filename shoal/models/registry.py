"""Models registered by name, so a config or a bundle can say ``model: {name: dlrm}``.

Every registered model has the same contract (tested once for all of them in
``tests/models/test_contract.py``)::

    model = build(config, dense_dim=D, buckets=[b_1, ..., b_F], outputs=C, sequences=[k, ...])
    logits = model(dense, ids, offsets)   # dense (B, D); ids[k] (N_k,); offsets[k] (B,)
                                          # -> logits (B,) when C == 1 (binary), (B, C) otherwise

``sequences`` lists the inputs that are byte sequences (``tokens: bytes`` text features, ids in byte order):
a sequence model (``bytecnn``) reads them in order; every other model treats them as a bag like any input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from torch import nn

from shoal.config import HeadsConfig
from shoal.data.features.media import MediaInput

__all__ = ["available", "build", "init_output_bias", "register"]

_MODELS: dict[str, type[nn.Module]] = {}

M = TypeVar("M", bound=type[nn.Module])


def register(name: str) -> Callable[[M], M]:
    """Class decorator: make a model buildable by ``name``."""

    def wrap(cls: M) -> M:
        if name in _MODELS:
            raise ValueError(f"model name {name!r} is already registered by {_MODELS[name].__name__}")
        _MODELS[name] = cls
        return cls

    return wrap


def available() -> list[str]:
    """Names of all registered models."""
    return sorted(_MODELS)


def build(config: Any, dense_dim: int, buckets: list[int], outputs: int = 1,
          sequences: list[int] | tuple[int, ...] = (), target: tuple[float, float] | None = None,
          media: Sequence[MediaInput] = (), heads: HeadsConfig | None = None,
          targets: Sequence[tuple[float, float] | None] = ()) -> nn.Module:
    """Instantiate the model named ``config.name`` for inputs of the given shape and ``outputs`` logits.

    ``target``: a regression label's training (mean, std); the model then answers in the label's units
    (:class:`~shoal.models.target.TargetScale`).

    ``media``: the image and audio features at the end of the dense input; each is encoded into a vector by a
    CNN before the model sees it (:class:`~shoal.models.media.WithMedia`).

    ``heads``: a multitask label's heads; the model is then built with ``heads.width`` outputs and answers one
    column per task (:class:`~shoal.models.multitask.MultiTask`), ``targets`` giving each regression task's
    training (mean, std) and None for a binary task."""
    if heads is not None:
        from shoal.models.multitask import MultiTask

        if len(targets) != outputs:
            raise ValueError(f"a multitask model of {outputs} outputs needs {outputs} targets, not {len(targets)}")
        body = build(config, dense_dim, buckets, heads.width, sequences, media=media)
        return MultiTask(body, heads, targets)
    cls = _MODELS.get(config.name)
    if cls is None:
        raise ValueError(f"unknown model {config.name!r}; available: {', '.join(available())}")
    if outputs < 1:
        raise ValueError(f"outputs must be >= 1, got {outputs}")
    if media:
        from shoal.models.media import WithMedia, plain_width

        width = plain_width(dense_dim, media) + sum(m.widths[-1] for m in media)  # plain values + one vector each
        model: nn.Module = WithMedia(cls(config, width, buckets, outputs, list(sequences)), dense_dim, media)
    else:
        model = cls(config, dense_dim, buckets, outputs, list(sequences))
    if target is None:
        return model
    from shoal.models.target import TargetScale

    if outputs != 1:
        raise ValueError(f"a regression model has 1 output, not {outputs}")
    return TargetScale(model, *target)



def init_output_bias(model: nn.Module, task: str, prior: Any) -> bool:
    """Set the output layer's bias of a freshly built ``model`` so that it starts at the training prior: the base
    rate's log-odds (``binary``), each tag's (``multilabel``), the classes' log priors (``multiclass``); its other
    inputs start near 0. On a 1%-positive label a model started at log-odds 0 (p = 0.5) spent its first epochs
    learning the base rate, and a short trial still answered ~9x it. Returns False where there is nothing to set
    (regression and multitask labels keep their own scaling; a model with no output bias found). ``prior``: the
    training data's (:attr:`~shoal.training.data.TrainingData.prior`): a rate, or one per class or tag."""
    import numpy as np
    import torch

    if task not in ("binary", "multiclass", "multilabel"):
        return False
    p = np.clip(np.atleast_1d(np.asarray(prior, dtype=np.float64)), 1e-6, 1 - 1e-6)
    value = np.log(p) if task == "multiclass" else np.log(p / (1 - p))
    from shoal.models.media import WithMedia

    bias = _output_bias(model.model if isinstance(model, WithMedia) else model, len(p))  # not a CNN's own layers
    if bias is None:
        return False
    with torch.no_grad():
        bias.copy_(torch.as_tensor(value, dtype=bias.dtype))
    return True


def _output_bias(model: nn.Module, outputs: int) -> nn.Parameter | None:
    """The bias of the layer that gives ``model``'s logits: every family ends in a ``Linear`` to ``outputs`` (the last
    such layer registered), or, a logistic model over no dense input, a bias of its own."""
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.out_features == outputs and module.bias is not None:
            last = module
    if last is not None:
        return last.bias
    own = getattr(model, "bias", None)
    return own if isinstance(own, nn.Parameter) and own.numel() == outputs else None
