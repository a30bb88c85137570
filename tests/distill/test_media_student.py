"""Distillation of image and audio models: a named student gets a smaller CNN, and a media teacher distils end to
end (the teacher's outputs looked up by line, the student's bundle predicts from image files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shoal.config import parse_config
from shoal.distill import distill, student_config
from shoal.distill.student import smaller_media


def _teacher_config(train: str = "rows.csv", widths: list[int] | None = None, blocks: int = 2):  # noqa: ANN202
    return parse_config({
        "name": "digits", "data": {"train": train, "valid_fraction": 0.25},
        "label": {"column": "kind", "kind": "multiclass"},
        "features": [{"name": "picture", "kind": "image", "channels": 1, "size": [8, 8],
                      "widths": widths or [8, 16], "blocks": blocks, "augment": True, "flip": False},
                     {"name": "sound", "kind": "audio", "widths": [16, 6, 3], "blocks": 3},
                     {"name": "shop", "kind": "sparse", "buckets": 16}],
        "model": {"name": "mlp", "embedding_dim": 4, "hidden": [16]},
        "train": {"epochs": 1, "batch_size": 16, "pictures": False, "threads": 1},
    })


def test_named_student_halves_each_media_cnn() -> None:
    cfg = student_config(_teacher_config(), "mlp")
    picture, sound, shop = cfg.features
    assert (picture.widths, picture.blocks) == ([4, 8], 1)
    assert picture.augment and not picture.flip and picture.size == (8, 8)  # the rest as the teacher reads it
    assert (sound.widths, sound.blocks) == ([8, 4, 3], 1)  # at least 4 channels, never more than the teacher's
    # and a cheaper spectrogram: a DFT of half the points (256 at 16 kHz), the window filling it, frames end to
    # end, half the bands
    assert (sound.window_ms, sound.hop_ms, sound.n_mels) == (16.0, 16.0, 20)
    assert shop.kind == "sparse" and cfg.model.name == "mlp"


def test_smaller_media_keeps_other_options() -> None:
    f = {"name": "p", "kind": "image", "widths": [32, 64, 128], "blocks": 2, "size": [28, 28]}
    # half the height and width, at least 16: 28 -> 16
    assert smaller_media(f) == {**f, "widths": [16, 32, 64], "blocks": 1, "size": [16, 16]}
    assert smaller_media({**f, "size": [64, 12]})["size"] == [32, 12]  # never larger than the teacher's
    assert f["widths"] == [32, 64, 128]  # the teacher's config is not changed
    sound = {"name": "s", "kind": "audio", "widths": [8], "blocks": 1, "window_ms": 30.0, "hop_ms": 20.0,
             "n_mels": 24, "sample_rate": 16000}
    # half the window (240 samples) widened to its DFT's 256, the hop never shorter than the teacher's, at least 16
    # bands
    assert smaller_media(sound) == {**sound, "widths": [4], "window_ms": 16.0, "hop_ms": 20.0, "n_mels": 16}


@pytest.mark.parametrize(("rate", "window_ms", "hop_ms"), [(8000, 25.0, 10.0), (16000, 25.0, 10.0), (44100, 25.0, 10.0),
                                                          (22050, 40.0, 30.0), (8000, 0.5, 0.25)])
def test_audio_student_window_fills_its_dft(rate: int, window_ms: float, hop_ms: float) -> None:
    """The student's window has as many samples as its DFT has points, half the teacher's DFT (or its own when
    the teacher's window is already that short), never more samples than the teacher's window; frames every
    window or the teacher's hop, whichever is longer."""
    from shoal.data.features.audio import AudioColumn

    sound = {"name": "s", "kind": "audio", "widths": [8], "blocks": 1, "window_ms": window_ms, "hop_ms": hop_ms,
             "n_mels": 40, "sample_rate": rate}
    small = smaller_media(sound)
    teacher = AudioColumn("s", "s", 0, sample_rate=rate, window_ms=window_ms, hop_ms=hop_ms)
    student = AudioColumn("s", "s", 0, sample_rate=rate, window_ms=small["window_ms"], hop_ms=small["hop_ms"])
    assert student.win_length <= teacher.win_length
    assert student.n_fft == max(2, teacher.n_fft // 2) or student.n_fft == teacher.n_fft == 2
    assert student.win_length == student.n_fft or student.win_length == teacher.win_length
    assert student.hop_length == max(teacher.hop_length, student.win_length)


def test_student_config_file_keeps_its_own_media_cnn() -> None:
    teacher = _teacher_config()
    mine = _teacher_config(widths=[6, 12], blocks=1)
    assert student_config(teacher, mine).features[0].widths == [6, 12]


def _digit_rows(root: Path, rows: int = 40) -> Path:
    """8x8 images: a bright square top left (class a) or bottom right (b); the label only in the picture."""
    rng = np.random.default_rng(0)
    lines = ["picture,shop,kind"]
    for i in range(rows):
        y = i % 2
        img = (rng.random((8, 8)) * 60).astype(np.uint8)
        img[:4, :4] += 150 * (y == 0)
        img[4:, 4:] += 150 * (y == 1)
        Image.fromarray(img).save(root / f"{i}.png")
        lines.append(f"{i}.png,s{i % 4},{'ab'[y]}")
    (root / "rows.csv").write_text("\n".join(lines) + "\n")
    return root / "rows.csv"


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_image_teacher_distils_into_a_smaller_cnn(tmp_path: Path) -> None:
    import shoal

    data = _digit_rows(tmp_path)
    doc = _teacher_config(str(data)).resolved()
    doc["features"] = [f for f in doc["features"] if f["kind"] != "audio"]
    teacher = shoal.train(parse_config(doc), home=tmp_path / "runs")
    student = distill(teacher.run_id, "mlp", home=tmp_path / "runs")
    bundle = shoal.load(student.run_id, home=tmp_path / "runs")
    media = bundle.encoder.media_inputs[0]
    assert (media.widths, media.blocks) == ((4, 8), 1)
    settings = student.summary["distill"]
    assert settings["teacher"] == teacher.run_id and 0 < settings["teacher_rows"] <= 40  # held-out rows left out
    report = shoal.evaluate_file(student.run_id, data, home=tmp_path / "runs")
    assert report["rows"] == 40 and 0.0 <= report["accuracy"] <= 1.0
