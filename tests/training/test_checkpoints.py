"""The Checkpointer (``shoal.training.checkpoints``): atomic checkpoints, resume state, best weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from shoal.training import checkpoints as ck
from shoal.training.checkpoints import Checkpointer, Optimizers, Position


def _model_and_opts(seed: int = 0) -> tuple[nn.Module, Optimizers]:
    torch.manual_seed(seed)
    model = nn.Linear(3, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(2, 3)).sum().backward()
    opt.step()  # an optimizer with state to save
    return model, [opt, None]


def test_a_checkpoint_restores_model_optimizers_and_position(tmp_path: Path) -> None:
    model, opts = _model_and_opts(0)
    pos = Position(epoch=1, chunk=2, batch=3, step=40, rows=5000, best_loss=0.4, bad_evals=1,
                   history=[{"logloss": 0.4, "epoch": 1.0, "step": 30.0}], train_seconds=1.5)
    Checkpointer(tmp_path).save(model, opts, pos)
    assert not (tmp_path / "checkpoint.tmp").exists()  # written aside, then renamed into place
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert set(state) == {"model", "optimizers", "position", "history"} and state["optimizers"][1] is None

    other, other_opts = _model_and_opts(1)
    back = Checkpointer(tmp_path).load(other, other_opts)
    assert back == pos
    for k, v in model.state_dict().items():
        assert torch.equal(other.state_dict()[k], v)
    first, again = opts[0], other_opts[0]
    assert first is not None and again is not None
    assert torch.equal(again.state_dict()["state"][0]["exp_avg"], first.state_dict()["state"][0]["exp_avg"])


def test_small_best_weights_wait_in_memory_for_the_next_checkpoint(tmp_path: Path) -> None:
    model, opts = _model_and_opts(0)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    checkpoints = Checkpointer(tmp_path)
    checkpoints.keep_best(model)
    assert not (tmp_path / "best.safetensors").exists()
    with torch.no_grad():
        model.weight.add_(1.0)  # training goes on
    checkpoints.save(model, opts, Position())
    assert (tmp_path / "best.safetensors").exists()  # a checkpoint never refers to best weights not on disk
    fresh = Checkpointer(tmp_path)  # e.g. after a resume: the best weights come from the file
    fresh.restore_best(model)
    assert torch.equal(model.weight, best["weight"])


def test_large_best_weights_go_straight_to_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ck, "BEST_IN_MEMORY_BYTES", 0)
    model, _ = _model_and_opts(0)
    Checkpointer(tmp_path).keep_best(model)
    assert (tmp_path / "best.safetensors").exists()


def test_a_process_that_does_not_write_saves_nothing(tmp_path: Path) -> None:
    model, opts = _model_and_opts(0)
    best = model.weight.detach().clone()
    replica = Checkpointer(tmp_path, writes=False, copy_best=True)
    replica.keep_best(model)
    replica.save(model, opts, Position())
    assert list(tmp_path.iterdir()) == []
    with torch.no_grad():
        model.weight.add_(1.0)
    replica.restore_best(model)  # its copy in memory
    assert torch.equal(model.weight, best)


class _World:
    """Extras as a distributed strategy keeps them."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.restored: dict[str, Any] | None = None

    def checkpoint_state(self) -> dict[str, Any]:
        return {"world_size": self.world}

    def restore_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.restored = state


def test_extras_travel_in_the_checkpoint(tmp_path: Path) -> None:
    model, opts = _model_and_opts(0)
    Checkpointer(tmp_path, extras=_World(2)).save(model, opts, Position(step=3))
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["world_size"] == 2
    extras = _World(2)
    assert Checkpointer(tmp_path, extras=extras).load(model, opts).step == 3
    assert extras.restored is not None and extras.restored["world_size"] == 2


def test_an_epoch_end_is_checkpointed_when_the_last_checkpoint_is_old(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    assert not Checkpointer(tmp_path).epoch_end_due()  # just written (or just started)
    assert Checkpointer(tmp_path, every_epoch=True).epoch_end_due()
    monkeypatch.setattr(ck, "EPOCH_CHECKPOINT_SECONDS", 0.0)
    assert Checkpointer(tmp_path).epoch_end_due()


def test_position_counts_steps_and_epochs() -> None:
    pos = Position()
    pos.advance(chunk=2, batch=4, rows=128)
    assert (pos.step, pos.rows, pos.chunk, pos.batch) == (1, 128, 2, 5)  # resume at the next batch
    pos.next_epoch()
    assert (pos.epoch, pos.chunk, pos.batch, pos.step) == (1, 0, 0, 1)
    assert {"steps", "rows_trained", "epochs_run", "stopped_early", "history"} <= set(pos.summary())
