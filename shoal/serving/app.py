"""The HTTP server: an app factory over a served model, a micro-batcher and Prometheus metrics.

    POST /predict         raw rows -> probabilities (binary) or class and class probabilities; JSON rows, or one
                          row as multipart/form-data (a file part per image or audio field)
    GET  /healthz         the process is up
    GET  /readyz          a model is loaded and the batcher runs (503 before start and while shutting down)
    GET  /model           name, version, fields, output, training metrics, limits
    GET  /metrics         Prometheus text format
    POST /admin/reload    hot swap to a new bundle version (needs the admin token)

``create_app`` loads the bundle before returning, so a bad bundle fails at start, not on the first request.
Errors: a bad request is a 4xx whose message names the field and the fix; anything else is a 500 carrying an
error id, with the stack trace logged under that id on the server and never sent to the client.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shoal.artifacts.models import is_model_ref
from shoal.errors import ShoalError
from shoal.serving.docs import offline_docs
from shoal.serving.endpoint import PredictEndpoint, ShoalApp, check_json_content_type, read_body
from shoal.serving.errors import ServeError
from shoal.serving.fairness import CLIENT_SCOPE_KEY, ClientLimits, Limiter
from shoal.serving.metrics import ServeMetrics
from shoal.serving.model import load_served
from shoal.serving.multipart import FORM, form_json_schema
from shoal.serving.schema import PredictResponse
from shoal.serving.service import Service
from shoal.serving.settings import ServeSettings

__all__ = ["ServeError", "ServeSettings", "Service", "create_app"]

log = logging.getLogger(__name__)

ENDPOINTS = frozenset({"/predict", "/healthz", "/readyz", "/model", "/metrics", "/admin/reload", "/openapi.json",
                       "/docs"})
_RELOAD_ERRORS = (ShoalError, FileNotFoundError, ValueError)  # a bad reference or bundle: the client's to fix
_BEARER = HTTPBearer(auto_error=False, description="the admin token given at start")
ADMIN_MAX_BODY_BYTES = 4096  # {"ref": ...} is a run id or a folder: a bigger admin body is refused (413) unread


class ReloadRequest(BaseModel):
    """``POST /admin/reload`` body (optional): which bundle to load; default: the one given at start again."""

    model_config = ConfigDict(extra="forbid")

    ref: str | None = Field(None, description="run id, prefix, 'latest' or bundle folder")


def freeze_heap() -> None:
    """Move every object alive now out of the cyclic garbage collector's reach (:func:`gc.freeze`).

    torch, pyarrow, pydantic, FastAPI and the model leave hundreds of thousands of long-lived objects, and every
    full collection walks them all: a pause that lands in the tail latency of whatever requests are in flight.
    Frozen objects are still freed by reference counting; only cycles among them are never collected. Called
    once, at start, after the model is loaded (a reload adds few objects: not worth a second pause).
    """
    gc.collect()
    gc.freeze()


class _Observe:
    """Outermost app layer: metrics for every request, and a logged 500 with an error id for any exception."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 499  # stays so when the client went away before an answer was sent
        started = False

        async def send_observed(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except Exception as err:
            error_id = uuid.uuid4().hex[:16]
            log.error("error %s: %s %s failed", error_id, scope.get("method"), scope.get("path"), exc_info=err)
            if started:
                raise
            status = 500
            body = json.dumps({"detail": "internal server error; the server log has the details under this id",
                               "error_id": error_id}).encode()
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
        finally:
            path = scope.get("path", "")
            self.metrics.observe(path if path in ENDPOINTS else "other", status, time.perf_counter() - start)


_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "multipart/form-data without a boundary, or a malformed multipart body"},
    413: {"description": "Body over max_body_bytes; a multipart body with too many parts, or a media part over "
                         "max_media_bytes"},
    415: {"description": "Content-Type neither JSON (application/json; a missing Content-Type is read as JSON) nor "
                         "multipart/form-data"},
    422: {"description": "Invalid rows: each error's msg names the field and what it accepts"},
    500: {"description": "Internal error: the response carries an error_id to find in the server log"},
}


def create_app(ref: str | Path, settings: ServeSettings | None = None, home: Path = Path("shoal-runs")) -> FastAPI:
    """A FastAPI app serving the bundle ``ref`` (run id, prefix, ``latest`` or bundle folder) from ``home``."""
    settings = settings or ServeSettings()
    model = load_served(ref, home, settings.max_rows_per_request, settings.max_text_bytes, settings.backend,
                        max_id_bytes=settings.max_id_bytes, max_list_ids=settings.max_list_ids,
                        max_media_bytes=settings.max_media_bytes,
                        max_batch_rows=settings.max_batch_rows)
    service = Service(ref, home, settings, model)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.batcher.start()
        if settings.freeze_heap:
            freeze_heap()
        following = asyncio.create_task(service.follow()) if settings.follow_s and is_model_ref(str(ref)) else None
        service.ready = True
        try:
            yield
        finally:
            service.ready = False
            if following is not None:
                following.cancel()
            await service.batcher.stop()

    app = ShoalApp(title="shoal", version=_package_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                   description=f"Predictions of {model.name}: raw rows in, probabilities out.")
    app.state.service = service
    offline_docs(app)
    limiter = Limiter(settings.max_inflight_per_client, settings.client_error_rate, settings.client_error_burst,
                      settings.client_key, byte_rate=settings.client_bytes_rate,
                      byte_burst=settings.client_bytes_burst)  # one per app: both ways in share the counts
    app.add_middleware(ClientLimits, limiter=limiter)
    app.add_middleware(_Observe, metrics=service.metrics)
    endpoint = PredictEndpoint(service)
    app.fast_predict = _Observe(ClientLimits(endpoint, limiter), service.metrics)  # POST /predict skips FastAPI

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, err: ServeError) -> JSONResponse:
        return JSONResponse({"detail": err.message}, status_code=err.status)

    @app.post("/predict", response_model=None, responses={200: {"model": PredictResponse}, **_ERROR_RESPONSES},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}},
                  FORM: {"schema": {"$ref": "#/components/schemas/PredictForm"}}}}})
    async def predict(request: Request) -> Response:
        """Probabilities for raw rows, named and typed as in training (see GET /model)."""
        # Reached only when the fast path does not apply (a mounted app, ...); the same answer either way.
        status, payload = await endpoint.answer(request.receive, request.headers.get("content-length"),
                                                request.headers.get("content-type"),
                                                request.scope.get(CLIENT_SCOPE_KEY, ""))
        return Response(payload, status_code=status, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "Not ready (starting or shutting down)"}})
    async def readyz() -> Response:
        """Ready to answer /predict."""
        if service.ready and service.batcher.running:
            return JSONResponse({"status": "ready", "version": service.model.version})
        return JSONResponse({"status": "not ready"}, status_code=503)

    @app.get("/model")
    async def model_info() -> dict[str, Any]:
        """The served version: name, fields, output, training metrics, limits and batching; the worker's pid."""
        return {**service.model.describe(), "pid": os.getpid(), "reloads": service.reloads,
                "settings": settings.model_dump(exclude={"admin_token"})}

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload", responses={401: {"description": "Missing or wrong token"},
                                          403: {"description": "Admin endpoints are off"},
                                          409: {"description": "Several workers: use SIGHUP"},
                                          413: {"description": f"Body over {ADMIN_MAX_BODY_BYTES} bytes"},
                                          415: {"description": "Content-Type not JSON"}},
              openapi_extra={"requestBody": {"required": False, "content": {"application/json": {
                  "schema": ReloadRequest.model_json_schema()}}}})
    async def reload(request: Request,
                     credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> dict[str, Any]:
        """Load a new bundle version and swap it in; requests in flight finish on the old one."""
        _authorize(settings, credentials)  # before a byte of the body is read
        check_json_content_type(request.headers.get("content-type"))
        raw = await read_body(request.receive, request.headers.get("content-length"), ADMIN_MAX_BODY_BYTES,
                              settings.body_timeout_s)
        try:
            body = ReloadRequest.model_validate_json(raw) if raw.strip() else None
        except ValidationError as err:
            raise ServeError(422, f"the reload body must be {{\"ref\": \"RUN or FOLDER\"}} or empty: "
                                  f"{err.errors(include_url=False)[0]['msg']}") from None
        if settings.workers > 1:
            raise ServeError(409, f"this server runs {settings.workers} worker processes; reload them all with "
                                  "SIGHUP to the main process (they are replaced one at a time)")
        started = time.perf_counter()
        try:
            old, new = await service.reload(body.ref if body else None)
        except _RELOAD_ERRORS as err:
            raise ServeError(400, f"reload failed, still serving version {service.model.version}: {err}") from None
        return {"previous": old.version, "version": new.version, "name": new.name, "run": new.run,
                "folder": str(new.folder), "reloads": service.reloads,
                "seconds": round(time.perf_counter() - started, 3)}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None or app.openapi_schema.get("x-shoal-version") != service.model.version:
            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            request = service.model.schema.request_model.model_json_schema(
                ref_template="#/components/schemas/{model}")
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(request.pop("$defs", {}))
            schemas["PredictRequest"] = request
            schemas["PredictForm"] = form_json_schema(service.model.schema)
            spec["x-shoal-version"] = service.model.version
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _package_version() -> str:
    """The installed shoal's version (the OpenAPI spec's ``info.version``); serving never imports the top-level API."""
    try:
        return version("shoal")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _authorize(settings: ServeSettings, credentials: HTTPAuthorizationCredentials | None) -> None:
    if settings.admin_token is None:
        raise ServeError(403, "admin endpoints are off: start the server with --admin-token TOKEN "
                              "(or SHOAL_ADMIN_TOKEN) to enable them")
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), settings.admin_token.encode()):
        raise ServeError(401, "admin endpoints need the header 'Authorization: Bearer TOKEN' with the token "
                              "the server was started with")
