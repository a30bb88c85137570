"""Image and audio features inside the raw ONNX graph: decoded pixels or samples in, the encoder's block out.

:mod:`shoal.export.raw` builds the whole raw graph; this module adds a media feature
(:mod:`shoal.data.features.media`) to it, in standard ONNX operators (opset 18, ``ai.onnx``). Decoding the file is
the caller's job, as UTF-8 is for text: every language has a PNG/JPEG and a WAV decoder, ONNX has neither. What
follows the decoder runs in the graph, so the graph's block equals the encoder's.

An image feature ``NAME`` (``channels`` C, ``size`` [H, W]) takes two inputs::

    NAME.pixels  uint8 (N, h, w, C)  each image decoded and converted to grey (C = 1, Pillow's "L") or RGB (C = 3),
                                     top-left aligned, padded with 0 to the batch's largest h and w
    NAME.sizes   int64 (N, 2)        each image's own (height, width) in pixels

    a 2 x 3 and a 1 x 1 grey image -> pixels [[[[9], [8], [7]], [[6], [5], [4]]], [[[3], [0], [0]], [[0], [0], [0]]]]
                                      sizes  [[2, 3], [1, 1]]

and the graph resizes each image to (H, W) with Pillow's BILINEAR filter exactly as Pillow computes it
(``Resample.c``: a triangle filter stretched by the scale when shrinking, per-image coefficients in float64 rounded
to 22-bit fixed point, two passes each rounded to uint8: horizontal then vertical, or the other way for an image
whose height shrinks by more than twice its width's change, as Pillow 13 does; :func:`vertical_first_rule` asks the
installed Pillow which, and the contract records it), then ``x / 255`` and
``(x - mean) / std`` in float32: bit for bit the encoder's pixels. The two passes are float64 matrix products of
whole numbers below 2**53, so they are exact whatever the summation order; the one float sum whose order matters
(each output pixel's filter weights) is a ``CumSum``, sequential as in Pillow.

An audio feature ``NAME`` takes::

    NAME.wave     float32 (N, S)  each sound's samples at the feature's ``sample_rate``, in [-1, 1) (16-bit PCM
                                  / 32768), a batch's shorter sounds padded with 0 (silence); S is free: the graph
                                  keeps the first ``seconds`` and pads with silence

and the graph computes the log-mel spectrogram of :class:`~shoal.data.logmel.LogMel`: zero padding of ``n_fft / 2``
at both ends less the frame's samples outside the window (``LogMel.pads``), the windowed DFT as a strided ``Conv``
over the window's taps alone (the module's own basis; frames end to end, hop = window, as a ``Reshape`` into frames
and one ``MatMul``), squared, and the mel filterbank written twice (``[fb, fb]``: it sums ``re^2`` and ``im^2`` of
each bin) as a ``MatMul``, ``Log(mel + 1e-6)``. Float32 convolutions sum in another order than PyTorch's, so the
spectrogram is close, not equal: within :data:`LOGMEL_TOLERANCE` in log units (the difference is float32 rounding of
the DFT sums, largest in bands near the 1e-6 floor; on the linear mel power it is ~2e-6 of the frame's largest
band). Resampling a file of another rate is the caller's part, with the encoder's recipe
(:func:`~shoal.data.logmel.resample` of the first ``ceil(seconds * rate) + 1`` samples); :func:`media_feed` does it.

A missing or undecodable image or sound is a bad row for the encoder (left out, or the request refused), so
:func:`media_feed` raises ValueError for it and the caller takes the encoder's path, whose report names the row.
"""

from __future__ import annotations

import io
import math
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shoal.data.features.audio import AudioColumn
from shoal.data.features.image import ImageColumn
from shoal.data.features.media import MediaColumn, MediaError, cell_bytes
from shoal.data.logmel import LOG_FLOOR
from shoal.export.onnx import ExportError
from shoal.export.raw_graph import PREFIX, GraphBuilder, per_object

__all__ = ["LOGMEL_TOLERANCE", "PRECISION_BITS", "USUAL_SHARE", "media_column", "media_contract", "media_feed",
           "media_graph", "pillow_weights", "synthetic_media", "usual_image_size", "vertical_first_rule"]

PRECISION_BITS = 22  # Pillow's fixed point for 8-bit images: 32 - 8 - 2 bits
USUAL_SHARE = 0.5  # a size is an image feature's usual one when at least this share of the rows read has it
LOGMEL_TOLERANCE = 1e-3  # max |log-mel(graph) - log-mel(torch)| in log units (measured 4e-4 at n_fft 512)


# -- the contract -----------------------------------------------------------------------------------------------
def media_contract(col: MediaColumn, vertical_first: bool = False) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(the feature's entry, its two inputs) in ``raw_inputs.json``."""
    if isinstance(col, ImageColumn):
        names = {"pixels": f"{col.name}.pixels", "sizes": f"{col.name}.sizes"}
        feature: dict[str, Any] = {
            "name": col.name, "kind": "image", "column": col.column, "channels": col.channels,
            "size": [col.height, col.width], "mean": col.mean, "std": col.std,
            "resize": "bilinear, as Pillow computes it", "vertical_first": vertical_first,
            "inputs": names}
        mode = "grey (Pillow's 'L')" if col.channels == 1 else "RGB"
        inputs = {
            names["pixels"]: {
                "dtype": "uint8", "shape": ["N", "h", "w", col.channels],
                "missing": "none: a missing or undecodable image is a bad row (send the row to the encoder's path)",
                "example": f"a 2 x 3 and a 1 x 1 image: shape [2, 2, 3, {col.channels}], the second image in "
                           "[1, :1, :1], zeros elsewhere",
                "about": f"each image of {col.name!r} (column {col.column!r}) decoded (PNG, JPEG, ...: the caller's "
                         f"job) and converted to {mode}, rows of pixels top to bottom, top-left aligned, padded with "
                         "0 to the batch's largest height h and width w; the graph resizes it to "
                         f"{col.height} x {col.width} (Pillow's bilinear filter, exactly) and normalises it"},
            names["sizes"]: {
                "dtype": "int64", "shape": ["N", 2], "missing": "none", "example": [[2, 3], [1, 1]],
                "about": "each image's own (height, width) in pixels, at least 1 and at most (h, w)"}}
        return feature, inputs
    if isinstance(col, AudioColumn):
        names = {"wave": f"{col.name}.wave"}
        feature = {
            "name": col.name, "kind": "audio", "column": col.column, "sample_rate": col.sample_rate,
            "seconds": col.seconds, "samples": col.samples, "n_mels": col.n_mels, "window_ms": col.window_ms,
            "hop_ms": col.hop_ms, "n_fft": col.n_fft, "win_length": col.win_length, "hop_length": col.hop_length,
            "frames": col.frames, "inputs": names}
        inputs = {
            names["wave"]: {
                "dtype": "float32", "shape": ["N", "S"],
                "missing": "none: a missing or undecodable sound is a bad row (send the row to the encoder's path)",
                "example": "two sounds of 3 and 1 samples: [[0.5, -0.25, 0.0], [0.125, 0.0, 0.0]]",
                "about": f"each sound of {col.name!r} (column {col.column!r}) decoded (WAV: the caller's job; 16-bit "
                         f"PCM / 32768, in [-1, 1)) at {col.sample_rate} Hz (resampled by the caller if the file's "
                         "rate differs), a batch's shorter sounds padded with 0 (silence); S is free; the graph "
                         "keeps the first "
                         f"{col.samples} samples ({col.seconds} s), pads with silence and computes the log-mel "
                         f"spectrogram ({col.n_mels} bands x {col.frames} frames)"}}
        return feature, inputs
    raise ExportError(f"media feature {col.name!r} is of kind {col.kind!r}, which the raw export does not compute "
                      "(it computes image and audio); export with --onnx instead")


def media_column(feature: dict[str, Any]) -> MediaColumn:
    """The encoder's column for a contract entry (its decoding options; not its weights, which it has none of)."""
    if feature["kind"] == "image":
        h, w = (int(v) for v in feature["size"])
        return ImageColumn(feature["name"], feature["column"], 0, channels=int(feature["channels"]), size=(h, w),
                           mean=float(feature["mean"]), std=float(feature["std"]))
    return AudioColumn(feature["name"], feature["column"], 0, sample_rate=int(feature["sample_rate"]),
                       seconds=float(feature["seconds"]), n_mels=int(feature["n_mels"]),
                       window_ms=float(feature["window_ms"]), hop_ms=float(feature["hop_ms"]))


# -- the caller's part: decoding ------------------------------------------------------------------------------------
_HERE = Path(".")  # never read from: the feed takes no paths
_COLUMNS: dict[int, tuple[Any, Any]] = {}  # a contract entry -> its column (per_object)


def media_feed(feature: dict[str, Any], cells: Sequence[Any]) -> dict[str, np.ndarray]:
    """The two inputs of media feature ``feature`` (a contract entry) for ``cells``: each the encoded file's
    bytes, or base64 text (or a ``data:`` URI), never a path (this never reads a file). Raises ValueError naming
    the row and column for a missing or undecodable cell (the encoder's path then reports the row)."""
    col = per_object(_COLUMNS, feature, media_column)
    if not isinstance(col, ImageColumn | AudioColumn):  # pragma: no cover - media_column makes only these
        raise TypeError(f"no feed for a {col.kind} feature")
    decoded: list[np.ndarray] = []
    for row, cell in enumerate(cells):
        try:
            data = cell_bytes(cell, _HERE, paths=False)
            decoded.append(col.pixels(data) if isinstance(col, ImageColumn) else col.decode(data))
        except MediaError as err:
            raise ValueError(f"row {row}, column {col.column!r}: {err} ({col.kind} feature {col.name!r}; the raw "
                             "graph takes bytes or base64, never a path)") from None
    names = feature["inputs"]
    if isinstance(col, ImageColumn):
        if len(decoded) == 1:  # a request's one image: nothing to pad
            return {names["pixels"]: decoded[0][None], names["sizes"]: np.array([decoded[0].shape[:2]], np.int64)}
        sizes = np.array([d.shape[:2] for d in decoded], np.int64).reshape(len(decoded), 2)
        h, w = (int(v) for v in sizes.max(axis=0, initial=1))
        pixels = np.zeros((len(decoded), h, w, col.channels), np.uint8)
        for i, d in enumerate(decoded):
            pixels[i, : d.shape[0], : d.shape[1]] = d
        return {names["pixels"]: pixels, names["sizes"]: sizes}
    if len(decoded) == 1:  # a request's one sound: nothing to stack
        feed = {names["wave"]: decoded[0][None]}
    else:
        waves = np.stack(decoded) if decoded else np.zeros((0, col.samples), np.float32)
        feed = {names["wave"]: waves.astype(np.float32, copy=False)}
    if "lengths" in names:  # a contract of version 3 (exports before 4): each sound's samples, all of them here
        feed[names["lengths"]] = np.full(len(decoded), col.samples, np.int64)
    return feed


def usual_image_size(col: ImageColumn, cells: Sequence[Any], base: Path) -> tuple[int, int] | None:
    """The decoded (height, width) that at least :data:`USUAL_SHARE` of ``cells`` have (bytes, base64 or paths
    relative to ``base``; cells that do not decode are left out of the count), or None."""
    from collections import Counter

    found: Counter[tuple[int, int]] = Counter()
    for cell in cells:
        try:
            h, w = col.pixels(cell_bytes(cell, base)).shape[:2]
        except MediaError:
            continue
        found[h, w] += 1
    if not found:
        return None
    size, count = found.most_common(1)[0]
    return size if count >= USUAL_SHARE * sum(found.values()) else None


# -- the graph ----------------------------------------------------------------------------------------------------
def media_graph(g: GraphBuilder, col: MediaColumn, vertical_first: bool = False,
                usual: tuple[int, int] | None = None) -> str:
    """Add media feature ``col`` to ``g``: returns its block of the dense input, (N, C*H*W) float32, the encoder's
    values in the encoder's order (also the graph value ``raw/media/<name>``). ``vertical_first``: resize images
    as Pillow 13 does (:func:`vertical_first_rule`). ``usual``: an image feature's usual (height, width), whose
    batches take constant weights (:func:`usual_image_size`)."""
    media_contract(col)  # refuses an unknown kind
    if isinstance(col, ImageColumn):
        block = _image(g, col, vertical_first, usual)
    elif isinstance(col, AudioColumn):
        block = _logmel(g, col)
    return g.op("Reshape", [block, g.i64([0, -1])], out=f"{PREFIX}media/{col.name}")


def _filter_weights(g: GraphBuilder, sizes: str, in_width: str, outs: tuple[int, int]) -> str:
    """Pillow's fixed-point BILINEAR coefficients (``precompute_coeffs`` + ``normalize_coeffs_8bpc``) of both
    axes at once: (N, 2, in, out) float64 whole numbers, ``[n, a, j, i]`` weighting source pixel j of image n along
    axis a (0: height, 1: width) for its output pixel i < ``outs[a]`` (later columns are not used); zero outside
    each pixel's support and past the image's own size (``sizes`` (N, 2)); ``in_width``: the rows j, at least the
    padded size of either axis. One set of nodes for both axes: at batch 1 a node costs more than its arithmetic."""
    from onnx import TensorProto as T

    f64 = np.float64
    size = g.op("Unsqueeze", [g.op("Cast", [sizes], to=T.DOUBLE), g.i64([2, 3])])  # (N, 2, 1, 1)
    scale = g.op("Div", [size, g.const(np.array(outs, f64).reshape(1, 2, 1, 1), f64)])
    support = g.op("Max", [scale, g.const(1.0, f64)])  # filterscale; the triangle's support is 1 * filterscale
    center = g.op("Mul", [g.const((np.arange(max(outs)) + 0.5).reshape(1, 1, 1, -1), f64), scale])  # (N, 2, 1, out)
    half = g.const(0.5, f64)
    lo = g.op("Max", [g.op("Floor", [g.op("Add", [g.op("Sub", [center, support]), half])]), g.const(0.0, f64)])
    hi = g.op("Min", [g.op("Floor", [g.op("Add", [g.op("Add", [center, support]), half])]), size])
    j = g.op("Cast", [g.op("Unsqueeze", [g.op("Range", [g.i64(0), in_width, g.i64(1)]), g.i64([0, 1, 3])])],
             to=T.DOUBLE)  # (1, 1, in, 1)
    t = g.op("Abs", [g.op("Mul", [g.op("Add", [g.op("Sub", [j, center]), half]),
                                  g.op("Div", [g.const(1.0, f64), support])])])  # (N, 2, in, out)
    zero = g.const(0.0, f64)
    w = g.op("Where", [g.op("Less", [t, g.const(1.0, f64)]), g.op("Sub", [g.const(1.0, f64), t]), zero])
    inside = g.op("And", [g.op("GreaterOrEqual", [j, lo]), g.op("Less", [j, hi])])
    w = g.op("Where", [inside, w, zero])
    total = g.slice(g.op("CumSum", [w, g.i64(2)]), -1, 2**62, axis=2)  # (N, 2, 1, out): summed in Pillow's order
    k = g.op("Where", [g.op("Equal", [total, zero]), w, g.op("Div", [w, total])])
    return g.op("Floor", [g.op("Add", [g.op("Mul", [k, g.const(float(1 << PRECISION_BITS), f64)]), half])])


def _axis_weights(g: GraphBuilder, weights: str, pixels: str, axis: int, out: int) -> str:
    """Axis ``axis``'s (N, 1, in, out) weights from :func:`_filter_weights`' block: its rows cut to the pixels'
    padded size along that axis (axis 1 + ``axis`` of (N, h, w, C)), its columns to ``out``."""
    rows = g.op("Shape", [pixels], start=1 + axis, end=2 + axis)  # (1,)
    ends = g.op("Concat", [g.i64([axis + 1]), rows, g.i64([out])], axis=0)
    return g.op("Slice", [weights, g.i64([axis, 0, 0]), ends, g.i64([1, 2, 3])])


def _pass(g: GraphBuilder, x: str) -> str:
    """``clip8``: a pass's fixed-point sums (with Pillow's rounding half added) back to pixel values 0..255."""
    f64 = np.float64
    rounded = g.op("Add", [x, g.const(float(1 << (PRECISION_BITS - 1)), f64)])
    return g.op("Clip", [g.op("Floor", [g.op("Mul", [rounded, g.const(2.0 ** -PRECISION_BITS, f64)])]),
                         g.const(0.0, f64), g.const(255.0, f64)])


def vertical_first_rule() -> bool:
    """Whether this Pillow runs the vertical pass first when an image shrinks more in height than in width (Pillow
    13: when ``h - H > 0`` and ``h - H > 2 (w - W)``; before, always the horizontal pass first). Asked of Pillow
    itself: a one-axis resize is one pass, so two of them in each order show which order ``resize`` takes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (20, 5), dtype=np.uint8))  # 20 x 5 -> 8 x 8: the orders differ
    bilinear = Image.Resampling.BILINEAR
    both = np.asarray(image.resize((8, 8), bilinear))
    vertical = np.asarray(image.resize((5, 8), bilinear).resize((8, 8), bilinear))
    horizontal = np.asarray(image.resize((8, 20), bilinear).resize((8, 8), bilinear))
    assert not np.array_equal(vertical, horizontal), "the probe image must tell the pass orders apart"
    return bool(np.array_equal(both, vertical))


def pillow_weights(size: int, out: int) -> np.ndarray:
    """Pillow's fixed-point BILINEAR coefficients along one axis of ``size`` pixels resized to ``out``: (size, out)
    float64 whole numbers, the arithmetic of :func:`_filter_weights` step for step (the same float64 operations in
    the same order), for the constants of the usual size's branch."""
    f64 = np.float64
    scale = f64(size) / f64(out)
    support = max(scale, f64(1.0))
    center = (np.arange(out) + 0.5) * scale  # (out,)
    lo = np.maximum(np.floor(center - support + 0.5), 0.0)
    hi = np.minimum(np.floor(center + support + 0.5), f64(size))
    j = np.arange(size, dtype=f64)[:, None]  # (size, 1)
    t = np.abs((j - center + 0.5) * (f64(1.0) / support))
    w = np.where((j >= lo) & (j < hi), np.where(t < 1.0, 1.0 - t, 0.0), 0.0)
    total = np.cumsum(w, axis=0)[-1:]  # summed in Pillow's order, as the graph's CumSum
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(total == 0.0, w, w / total)
    return np.floor(k * float(1 << PRECISION_BITS) + 0.5)


def _image(g: GraphBuilder, col: ImageColumn, vertical_first: bool, usual: tuple[int, int] | None = None) -> str:
    """(N, C, H, W) float32: resized as Pillow's BILINEAR does, then / 255 and (x - mean) / std. ``usual``: the
    (height, width) most images arrive at; a batch of only such images takes a branch whose weights are constants
    (two products and their roundings, or nothing at all when it is the feature's own size) instead of the ~60
    nodes that work the weights out from each image's size."""
    from onnx import TensorProto as T

    pixels, sizes = f"{col.name}.pixels", f"{col.name}.sizes"
    x = g.op("Transpose", [g.op("Cast", [pixels], to=T.DOUBLE)], perm=[0, 3, 1, 2])  # (N, C, h, w)
    if usual is None:
        small = _any_size(g, col, vertical_first, x)
    else:
        padded = g.unsqueeze(g.op("Shape", [pixels], start=1, end=3), 0)  # (1, 2): the batch's (h, w)
        off = g.op("Sub", [g.op("Concat", [padded, sizes], axis=0), g.i64([list(usual)])])  # (N + 1, 2)
        only_usual = g.op("Equal", [g.op("ReduceSum", [g.op("Abs", [off])], keepdims=0), g.i64(0)])
        small = g.op("If", [only_usual],
                     then_branch=g.branch(lambda: _usual_size(g, col, vertical_first, x, usual), T.DOUBLE),
                     else_branch=g.branch(lambda: _any_size(g, col, vertical_first, x), T.DOUBLE))
    scaled = g.op("Div", [g.op("Cast", [small], to=T.FLOAT), g.const(255.0, np.float32)])
    return g.op("Div", [g.op("Sub", [scaled, g.const(col.mean, np.float32)]), g.const(col.std, np.float32)])


def _usual_size(g: GraphBuilder, col: ImageColumn, vertical_first: bool, x: str, usual: tuple[int, int]) -> str:
    """(N, C, H, W) float64 0..255 of images all of (height, width) ``usual``: the passes with constant weights,
    in the order this Pillow takes for that size; an image of the feature's own size is not resized (Pillow
    copies it)."""
    h, w = usual
    if (h, w) == (col.height, col.width):
        return g.op("Identity", [x])
    across = g.const(pillow_weights(w, col.width), np.float64, "across")  # (w, W)
    down = g.const(pillow_weights(h, col.height).T, np.float64, "down")  # (H, h)
    if vertical_first and h - col.height > 0 and h - col.height > 2 * (w - col.width):
        return _pass(g, g.op("MatMul", [_pass(g, g.op("MatMul", [down, x])), across]))
    return _pass(g, g.op("MatMul", [down, _pass(g, g.op("MatMul", [x, across]))]))


def _any_size(g: GraphBuilder, col: ImageColumn, vertical_first: bool, x: str) -> str:
    """(N, C, H, W) float64 0..255 of images of any sizes: each image's weights worked out from its own size."""
    pixels, sizes = f"{col.name}.pixels", f"{col.name}.sizes"
    padded = g.op("ReduceMax", [g.op("Shape", [pixels], start=1, end=3)], keepdims=0)  # max(h, w): a scalar
    weights = _filter_weights(g, sizes, padded, (col.height, col.width))  # (N, 2, max(h, w), max(H, W))
    across = _axis_weights(g, weights, pixels, 1, col.width)  # (N, 1, w, W)
    down = g.op("Transpose", [_axis_weights(g, weights, pixels, 0, col.height)], perm=[0, 1, 3, 2])  # (N, 1, H, h)
    small = _pass(g, g.op("MatMul", [down, _pass(g, g.op("MatMul", [x, across]))]))  # (N, C, H, W) 0..255
    if vertical_first:  # the images that shrink most in height take the other order, as this Pillow does
        other = _pass(g, g.op("MatMul", [_pass(g, g.op("MatMul", [down, x])), across]))
        shrink = g.op("Sub", [sizes, g.i64([[col.height, col.width]])])  # (N, 2)
        shrink_h = g.op("Gather", [shrink, g.i64(0)], axis=1)  # (N,)
        shrink_w = g.op("Gather", [shrink, g.i64(1)], axis=1)
        flip = g.op("And", [g.op("Greater", [shrink_h, g.i64(0)]),
                            g.op("Greater", [shrink_h, g.op("Mul", [shrink_w, g.i64(2)])])])  # (N,)
        small = g.op("Where", [g.op("Unsqueeze", [flip, g.i64([1, 2, 3])]), other, small])
    return small


def _logmel(g: GraphBuilder, col: AudioColumn) -> str:
    """(N, n_mels, frames) float32: the first ``samples`` samples (silence after a shorter sound), then
    :class:`~shoal.data.logmel.LogMel` as ONNX ops."""
    logmel = col.logmel
    wave_in = f"{col.name}.wave"
    left, right = logmel.pads  # the window's taps alone: the frame's zero-weight samples are not padded for
    basis = logmel.basis.numpy()  # (2F, 1, win_length): the windowed DFT's real, then imaginary parts
    filterbank = logmel.filterbank.numpy()  # (M, F)
    twice = np.concatenate([filterbank, filterbank], axis=1)  # (M, 2F): sums re^2 and im^2 of each bin's band
    # the DFT's outputs that reach a band: not a bin outside every band, nor the imaginary part of the DC (and
    # Nyquist) bin, zero whatever the sound
    used = (twice != 0).any(axis=0) & (basis[:, 0] != 0).any(axis=1)  # (2F,)
    basis, twice = basis[used], twice[:, used]
    win, hop, frames = basis.shape[2], logmel.hop_length, col.frames
    # the samples the frames read: left + samples + right, or when frames end to end (hop = win) as far as the
    # last frame reaches; the sound's first `samples` (a longer one cut: only where the frames read past them),
    # zeros padded whatever the width S sent, then the excess cut: nodes with constant operands, where working
    # out the padding from S took five. The caller pads a batch's shorter sounds with zeros, which are silence.
    width = left + col.samples + right
    if hop == win:
        width = min(width, frames * win)
    wave = g.slice(wave_in, 0, col.samples, axis=1) if width > left + col.samples else wave_in
    padded = g.slice(g.op("Pad", [wave, g.i64([0, left, 0, col.samples + right])]), 0, width, axis=1)  # (N, width)
    if hop == win:  # frames that neither overlap nor leave gaps: a Reshape, and the DFT one MatMul
        x = g.op("Reshape", [padded, g.i64([0, frames, win])])  # (N, T, win)
        spec = g.op("MatMul", [x, g.const(np.ascontiguousarray(basis[:, 0].T), np.float32, "dft")])  # (N, T, 2F)
        mel = g.op("MatMul", [g.op("Mul", [spec, spec]), g.const(twice.T.copy(), np.float32, "mel")])  # (N, T, M)
        mel = g.op("Transpose", [mel], perm=[0, 2, 1])  # (N, M, T)
    else:  # a 1-channel strided Conv: ONNX Runtime's Gather of the overlapping frames ran slower than it
        spec = g.op("Conv", [g.unsqueeze(padded, 1), g.const(basis, np.float32, "dft")], strides=[hop])  # (N, 2F, T)
        mel = g.op("MatMul", [g.const(twice, np.float32, "mel"), g.op("Mul", [spec, spec])])  # (M, 2F) @ (N, 2F, T)
    return g.op("Log", [g.op("Add", [mel, g.const(LOG_FLOOR, np.float32)])])


# -- synthetic rows -------------------------------------------------------------------------------------------------
def synthetic_media(rng: np.random.Generator, col: MediaColumn, rows: int,
                    usual: tuple[int, int] | None = None) -> list[bytes]:
    """Random encoded files for ``col``: images of odd sizes (smaller and larger than the feature's, up to 4x),
    grey, RGB, RGBA and palette, PNG and JPEG (with ``usual``, every other image a PNG of that size, the first
    one included, so a batch of one takes the usual size's branch); sounds at the feature's rate and others, shorter
    and longer than ``seconds``, tones over noise, and silence."""
    if isinstance(col, ImageColumn):
        return [_image_file(rng, col, usual if usual is not None and i % 2 == 0 else None) for i in range(rows)]
    if isinstance(col, AudioColumn):
        return [_sound_file(rng, col) for _ in range(rows)]
    raise ExportError(f"no synthetic files for a {col.kind} feature ({col.name!r})")


def _image_file(rng: np.random.Generator, col: ImageColumn, size: tuple[int, int] | None = None) -> bytes:
    from PIL import Image

    h = int(rng.integers(1, 4 * col.height + 2))
    w = int(rng.integers(1, 4 * col.width + 2))
    if size is not None:
        h, w = size
    mode = ("L", "RGB", "RGBA", "P")[int(rng.integers(0, 4))]
    smooth = np.cumsum(rng.integers(-40, 41, (h, w, 4)), axis=1)  # gradients and edges, not only noise
    pixels = np.clip(smooth + rng.integers(0, 256, (1, 1, 4)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGBA")
    image = image.convert("RGB").quantize(16) if mode == "P" else image.convert(mode)
    out = io.BytesIO()
    if mode in ("L", "RGB") and rng.random() < 0.4 and size is None:  # a usual size's JPEG might decode smaller
        image.save(out, format="JPEG", quality=int(rng.integers(50, 95)))  # larger ones decode smaller (draft)
    else:
        image.save(out, format="PNG")
    return out.getvalue()


def _sound_file(rng: np.random.Generator, col: AudioColumn) -> bytes:
    rate = int((col.sample_rate, col.sample_rate, col.sample_rate * 2, max(1, col.sample_rate * 3 // 4))
               [int(rng.integers(0, 4))])
    seconds = col.seconds * float(rng.uniform(0.1, 1.6))
    t = np.arange(max(1, math.ceil(seconds * rate))) / rate
    kind = rng.random()
    if kind < 0.1:
        x = np.zeros_like(t)  # silence: the log floor
    else:
        x = (float(rng.uniform(0.05, 0.7)) * np.sin(2 * np.pi * float(rng.uniform(50, rate / 2.2)) * t)
             + float(rng.uniform(0, 0.2)) * rng.standard_normal(len(t)))
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return out.getvalue()
