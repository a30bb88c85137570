"""What the routes of one server share: the served version (swapped whole on a reload), the micro-batcher and
the metrics. Its own module so that the app (:mod:`shoal.serving.app`) and the ``POST /predict`` path
(:mod:`shoal.serving.endpoint`) both build on it without importing each other."""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np

from shoal.serving.batcher import MicroBatcher
from shoal.serving.metrics import ServeMetrics
from shoal.serving.model import ServedModel, load_served
from shoal.serving.settings import ServeSettings

__all__ = ["Service"]

log = logging.getLogger(__name__)


class Service:
    """What the routes share: the served version (swapped whole on reload), the batcher and the metrics."""

    def __init__(self, ref: str | Path, home: Path, settings: ServeSettings, model: ServedModel) -> None:
        self.ref = ref
        self.home = home
        self.settings = settings
        self.model = model
        self.metrics = ServeMetrics()
        self.metrics.serving(model.name, model.version, model.predictor.backend)
        self.batcher = MicroBatcher(_run_batch, settings.max_batch_rows, settings.max_wait_ms, self.metrics,
                                    batching=settings.batching)
        self.reloads = 0
        self.ready = False
        self._reload_lock: asyncio.Lock | None = None

    async def reload(self, ref: str | Path | None = None) -> tuple[ServedModel, ServedModel]:
        """Load ``ref`` (default: the start ref again) off the event loop, warm it up, then swap; returns
        (old, new). Requests already validated against the old version finish on it."""
        if self._reload_lock is None:
            self._reload_lock = asyncio.Lock()
        async with self._reload_lock:
            s = self.settings
            target = self.ref if ref is None else ref
            try:
                new = await asyncio.get_running_loop().run_in_executor(None, functools.partial(
                    load_served, target, self.home, s.max_rows_per_request, s.max_text_bytes, s.backend,
                    max_id_bytes=s.max_id_bytes, max_list_ids=s.max_list_ids, max_batch_rows=s.max_batch_rows,
                    max_media_bytes=s.max_media_bytes))
            except BaseException:
                self.metrics.reloads.labels("failed").inc()
                raise
            old, self.model = self.model, new
            if ref is not None:
                self.ref = ref  # a later SIGHUP reloads what was last asked for
            self.reloads += 1
            self.metrics.reloads.labels("ok").inc()
            self.metrics.serving(new.name, new.version, new.predictor.backend)
            log.info("reloaded %s: version %s -> %s (%s)", target, old.version, new.version, new.folder)
            return old, new

    async def follow(self) -> None:
        """While serving a model reference (``NAME@ALIAS``, ``NAME``), reload whenever it points at another run:
        moving an alias (``shoal alias``) swaps the server within ``settings.follow_s``, with no failed request
        (a reload loads and warms the new version before the swap). Runs until cancelled."""
        from shoal.artifacts.models import ModelNotFoundError, ModelRegistry

        models = ModelRegistry(self.home)  # one instance: the registry's schema is checked once, then only read
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.settings.follow_s)
            try:
                try:
                    run = (await loop.run_in_executor(None, models.resolve, str(self.ref))).run_id
                except ModelNotFoundError:
                    if "@" not in str(self.ref):
                        return  # a plain name that is no model (a bundle folder here): nothing to follow
                    raise
                if run != self.model.run:
                    log.info("%s now points at run %s (serving %s): reloading", self.ref, run, self.model.run)
                    await self.reload()
            except Exception:
                log.exception("following %s failed; still serving version %s", self.ref, self.model.version)

    async def reload_logged(self) -> None:
        """SIGHUP: reload, and log instead of raising (there is no client to answer)."""
        try:
            await self.reload()
        except Exception:
            log.exception("reload on SIGHUP failed; still serving version %s", self.model.version)


def _run_batch(model: ServedModel, rows: list[Any]) -> np.ndarray:
    return model.predict_rows(rows)
