"""The Bundle: the unit that is saved, evaluated, exported and served.

A bundle folder holds ``model.safetensors`` (the weights) and ``bundle.json`` (the fitted encoder, the model
config, the resolved run config and the metrics). Loading a bundle never unpickles and never executes code
from the files: the model class is looked up by name in shoal's own registry.

A bundle can come from anywhere, so loading trusts nothing in the folder: before a byte is read, every file in
it must be a regular file within the size limits, and a symlink must stay inside the folder (no
``model.safetensors -> /dev/zero``, whose read never ends); the weights must be as long as their header says. A
bundle that fails any check, or whose JSON is damaged or of the wrong shape, raises one :class:`BundleError`
naming the file and what is wrong with it (the server answers 400 on reload; ``shoal serve`` prints one line).

Writes are atomic (a temporary file, then a rename), and a full disk raises
:class:`~shoal.artifacts.disk.DiskFullError` naming the device, the file and the bytes free, with the partial
file removed (:func:`~shoal.artifacts.disk.write_atomically`).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import TypeAdapter
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from shoal.artifacts.disk import DiskFullError, no_space_left, write_atomically  # re-exported: older imports
from shoal.config import HeadsConfig, ModelConfig, RunConfig
from shoal.data.batch import Batch
from shoal.data.encoder import Encoder, format_problem
from shoal.data.features.media import MediaInput
from shoal.errors import ShoalError
from shoal.metrics import TaskPrior, probabilities, sigmoid
from shoal.models import build

__all__ = ["Bundle", "BundleError", "DiskFullError", "answers", "check_bundle_files", "load_bundle", "no_space_left",
           "positive_class", "save_bundle", "task_of", "write_atomically"]

BUNDLE_FORMAT = "shoal-bundle"
BUNDLE_VERSION = 1
_MODEL_CONFIG: TypeAdapter[Any] = TypeAdapter(ModelConfig)
MAX_JSON_BYTES = 256 << 20  # bundle.json, export.json: the encoder, config and metrics; far below this
MAX_SAFETENSORS_HEADER = 100 << 20  # the limit safetensors itself sets on a header


@dataclass
class Bundle:
    """A trained model with its encoder and metadata."""

    model: nn.Module
    encoder: Encoder
    config: RunConfig
    meta: dict[str, Any] = field(default_factory=dict)

    @torch.no_grad()
    def predict_logits(self, batch: Batch, batch_size: int = 8192) -> np.ndarray:
        if any(m.training for m in self.model.modules()):  # eval() walks and sets every module: only when needed
            self.model.eval()
        out = []
        for start in range(0, len(batch), batch_size):
            part = batch.slice(start, start + batch_size) if len(batch) > batch_size else batch
            out.append(self.model(*part.inputs()).float().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def predict_proba(self, batch: Batch) -> np.ndarray:
        """Probabilities: shape (B,) for a binary label (of the positive class), (B, C) for a multiclass one,
        (B, T) for a multilabel one (a sigmoid per tag, in ``tags`` order); for a regression label, the predicted
        values (B,) (the model's outputs); for a multitask label (B, T), per task in ``tasks`` order the
        probability (binary) or the value (regression)."""
        return answers(self.predict_logits(batch), self.task, self.task_kinds)

    @property
    def task(self) -> str:
        """What the model predicts: ``binary``, ``multiclass``, ``regression``, ``multilabel`` or ``multitask``."""
        return task_of(self.meta)

    @property
    def tasks(self) -> list[str] | None:
        """The task names (their label columns) in output order for a multitask label; None otherwise."""
        return [t["name"] for t in self.meta["tasks"]] if self.task == "multitask" else None

    @property
    def task_kinds(self) -> list[str] | None:
        """Each task's kind (``binary`` or ``regression``) in output order for a multitask label; None otherwise."""
        return [t["kind"] for t in self.meta["tasks"]] if self.task == "multitask" else None

    @property
    def tags(self) -> list[str] | None:
        """Tag names in output order for a multilabel label; None otherwise."""
        tags = self.meta.get("tags")
        return list(tags) if tags and self.task == "multilabel" else None

    @property
    def classes(self) -> list[str] | None:
        """Class names in output order for a multiclass label; None for a binary one."""
        classes = self.meta.get("classes")
        return list(classes) if classes else None

    @property
    def base_rate(self) -> float:
        """The training base rate of a binary label (NE is relative to it)."""
        return float(self.meta["train_base_rate"])

    @property
    def prior(self) -> float | list[float] | dict[str, float] | list[TaskPrior]:
        """What NE is relative to: the training base rate (binary) or class frequencies (multiclass); for a
        regression label, its training ``mean`` and ``std`` (what the normalised MSE is relative to)."""
        if self.task == "regression":
            return {k: float(v) for k, v in self.meta["target"].items()}
        if self.task == "multilabel":
            return [float(q) for q in self.meta["train_tag_prior"]]
        if self.task == "multitask":
            return [TaskPrior.of(t) for t in self.meta["tasks"]]
        if self.classes:
            return [float(q) for q in self.meta["train_class_prior"]]
        return self.base_rate


def answers(logits: np.ndarray, task: str, kinds: list[str] | None = None) -> np.ndarray:
    """A model's outputs as answers: probabilities (binary, multiclass), sigmoids per tag (multilabel), values
    (regression), and for a multitask model, per column, the sigmoid of a binary task or a regression task's value."""
    if task == "multitask":
        assert kinds is not None and logits.ndim == 2 and logits.shape[1] == len(kinds)
        binary = np.array([k == "binary" for k in kinds])
        return np.where(binary, sigmoid(logits), logits.astype(np.float64))
    return (logits.astype(np.float64) if task == "regression" else sigmoid(logits) if task == "multilabel"
            else probabilities(logits))


def positive_class(bundle: Bundle) -> str | None:
    """What a binary bundle's probability is of, in words: ``label 'COLUMN' is 'yes'`` (its positive values);
    None for other tasks."""
    label = bundle.config.label
    if bundle.task != "binary" or label is None or bundle.classes:
        return None
    return f"label {label.column!r} is {' or '.join(repr(v) for v in label.positive)}"


def task_of(meta: dict[str, Any]) -> str:
    """The task a bundle's (or an export's) metadata describes: ``regression``, ``multilabel``, ``multiclass`` or
    ``binary``."""
    if meta.get("task") in ("regression", "multilabel", "multitask"):
        return str(meta["task"])
    return "multiclass" if meta.get("classes") else "binary"


class BundleError(ShoalError, ValueError):
    """A bundle folder that cannot be loaded; the message names the file and what is wrong with it."""


def save_bundle(path: Path, model: nn.Module, encoder: Encoder, config: RunConfig, meta: dict[str, Any]) -> Path:
    """Write a bundle folder; returns its path."""
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    write_atomically(path / "model.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    doc = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "model": config.model.model_dump(mode="json"),
        "inputs": {"dense_dim": encoder.dense_dim, "buckets": encoder.buckets, "outputs": encoder.outputs,
                   "sequences": encoder.sequence_slots,
                   "target": None if encoder.target_ is None else list(encoder.target_),
                   **({"heads": encoder.label.task_heads.model_dump(mode="json"),
                       "targets": [None if t is None else list(t) for t in encoder.targets_]}
                      if encoder.multitask and encoder.label is not None else {}),
                   **({"media": [m.to_dict() for m in encoder.media_inputs]} if encoder.media_features else {})},
        "encoder": encoder.to_dict(),
        "config": config.resolved(),
        "meta": meta,
    }
    text = json.dumps(doc, indent=2, sort_keys=True)
    write_atomically(path / "bundle.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def check_bundle_files(folder: Path) -> dict[str, tuple[int, ...]]:
    """Refuse a bundle folder before reading any of it: every entry must be a regular file or folder inside it
    (a symlink may point within the folder only), ``bundle.json`` and ``model.safetensors`` must exist, JSON
    files must be under :data:`MAX_JSON_BYTES`, and the weights as long as their header says. Returns the
    weights' tensor shapes, from that header."""
    folder = Path(folder)
    if not (folder / "bundle.json").is_file() and not (folder / "bundle.json").is_symlink():
        raise FileNotFoundError(f"{folder}: not a shoal bundle (no bundle.json); pass a run id or a bundle folder")
    root = folder.resolve()
    for entry in _entries(folder):
        _check_entry(entry, root)
    weights = folder / "model.safetensors"
    if not weights.exists():
        raise BundleError(f"{weights}: missing; a bundle holds bundle.json and model.safetensors "
                          "(save or export it again)")
    if not weights.is_file():
        raise BundleError(f"{weights}: a folder, not a file; a bundle holds bundle.json and model.safetensors "
                          "(save or export it again)")
    return _check_safetensors_size(weights)


def _entries(folder: Path) -> Iterator[Path]:
    for top, dirs, files in os.walk(folder, followlinks=False):
        for name in [*dirs, *files]:
            yield Path(top) / name


def _check_entry(entry: Path, root: Path) -> None:
    try:
        info = entry.lstat()
        if stat.S_ISLNK(info.st_mode):
            target = entry.resolve()
            if target != root and root not in target.parents:
                raise BundleError(f"{entry}: a symlink to {target}, outside the bundle folder {root}; a bundle "
                                  "reads only its own files: copy the file into the folder")
            info = target.stat()
    except OSError as err:  # a dangling symlink, a loop, no permission
        raise BundleError(f"{entry}: cannot be read ({err.strerror or err})") from None
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        kind = ("a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else
                "a named pipe" if stat.S_ISFIFO(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode) else
                "not a regular file")
        raise BundleError(f"{entry}: {kind}; a bundle holds regular files only")
    if entry.suffix == ".json" and info.st_size > MAX_JSON_BYTES:
        raise BundleError(f"{entry}: {info.st_size:,} bytes, over the limit of {MAX_JSON_BYTES:,} bytes for a "
                          "bundle's JSON file; is it the right file?")


def _check_safetensors_size(path: Path) -> dict[str, tuple[int, ...]]:
    """The weights file must be exactly as long as its header says (a truncated copy fails here, named); returns
    each tensor's shape, as the header says."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        prefix = fh.read(8)
        n = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if n < 2 or n > MAX_SAFETENSORS_HEADER or 8 + n > size:
            raise BundleError(f"{path}: not a safetensors file, or truncated ({size:,} bytes); save or export the "
                              "bundle again")
        try:
            header = json.loads(fh.read(n))
            tensors = {k: v for k, v in header.items() if k != "__metadata__"}
            end = max([int(v["data_offsets"][1]) for v in tensors.values()], default=0)
            shapes = {k: tuple(int(d) for d in v["shape"]) for k, v in tensors.items()}
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
            raise BundleError(f"{path}: a damaged safetensors header ({err}); save or export the bundle again") \
                from None
    if 8 + n + end != size:
        raise BundleError(f"{path}: {size:,} bytes, but its header describes {8 + n + end:,}: the file is truncated "
                          "or damaged; save or export the bundle again")
    return shapes


def _check_shapes(model: nn.Module, have: dict[str, tuple[int, ...]], weights: Path, doc_path: Path) -> None:
    """The tensors the model of ``bundle.json`` would allocate must be the ones ``weights`` holds (``have``: its
    header's shapes), checked before any table is allocated (a tampered ``inputs.buckets`` of 3e8 rows is refused
    at once, not after gigabytes)."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for name in sorted(set(want) | set(have)):
        if want.get(name) != have.get(name):
            raise BundleError(f"{weights}: does not hold the weights of the model in {doc_path.name} (tensor "
                              f"{name!r}: shape {want.get(name)} there, {have.get(name)} here; the files do not "
                              "belong together, one is damaged or edited); save or export the bundle again")


def load_bundle(path: Path) -> Bundle:
    """Read a bundle folder (weights via safetensors, everything else JSON), checked first
    (:func:`check_bundle_files`); a damaged bundle raises :class:`BundleError` naming the file."""
    path = Path(path)
    shapes = check_bundle_files(path)
    doc_path = path / "bundle.json"
    try:
        doc = json.loads(doc_path.read_text(encoding="utf-8"))
    except (ValueError, OSError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        what = "nested too deeply" if isinstance(err, RecursionError) else err
        raise BundleError(f"{doc_path}: not valid JSON ({what}); the file is damaged: save or export the bundle "
                          "again") from None
    if not isinstance(doc, dict):
        raise BundleError(f"{doc_path}: a JSON {type(doc).__name__}, not an object; not a shoal bundle")
    if doc.get("format") != BUNDLE_FORMAT or doc.get("version") != BUNDLE_VERSION:
        raise BundleError(
            f"{doc_path}: format {doc.get('format')!r} version {doc.get('version')!r} is not supported "
            f"(expected {BUNDLE_FORMAT!r} version {BUNDLE_VERSION}); re-export it with this shoal"
        )
    part = "model"
    try:
        model_cfg = _MODEL_CONFIG.validate_python(doc["model"])
        part = "inputs"
        inputs = doc["inputs"]
        target = inputs.get("target")
        heads = inputs.get("heads")

        def model_of_inputs() -> nn.Module:
            return build(model_cfg, inputs["dense_dim"], list(inputs["buckets"]), int(inputs.get("outputs", 1)),
                         list(inputs.get("sequences", [])),
                         target=None if target is None else (float(target[0]), float(target[1])),
                         media=[MediaInput.from_dict(m) for m in inputs.get("media", [])],
                         heads=None if heads is None else HeadsConfig.model_validate(heads),
                         targets=[None if t is None else (float(t[0]), float(t[1]))
                                  for t in inputs.get("targets", [])])

        try:
            with torch.device("meta"):  # shapes only, no memory: a bundle.json asking for huge tables fails here
                skeleton: nn.Module | None = model_of_inputs()
        except (RuntimeError, NotImplementedError):  # a module that needs real memory to build: checked on load
            skeleton = None
        if skeleton is not None:
            _check_shapes(skeleton, shapes, path / "model.safetensors", doc_path)
        model = model_of_inputs()
        part = "encoder"
        problem = format_problem(doc["encoder"].get("format_version"))
        if problem is not None:  # an older shoal's bundle: say so, not "damaged"
            raise BundleError(f"{doc_path}: {problem}")
        encoder = Encoder.from_dict(doc["encoder"])
        part = "config"
        config = RunConfig.model_validate(doc["config"])
        meta = doc.get("meta", {})
        if not isinstance(meta, dict):
            raise TypeError(f"a JSON {type(meta).__name__}, not an object")
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RuntimeError) as err:
        what = f"missing key {err}" if isinstance(err, KeyError) else str(err).splitlines()[0][:300]
        raise BundleError(f"{doc_path}: {part!r} is wrong: {what}; the file is damaged or from another tool: "
                          "save or export the bundle again") from None
    weights = path / "model.safetensors"
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except (SafetensorError, RuntimeError, ValueError, OSError) as err:
        raise BundleError(f"{weights}: does not hold the weights of the model in bundle.json "
                          f"({str(err).splitlines()[0][:300]}); save or export the bundle again") from None
    model.eval()
    return Bundle(model=model, encoder=encoder, config=config, meta=meta)
