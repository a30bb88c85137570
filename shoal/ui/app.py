"""The ``shoal ui`` web app: a read-only view of the registry, plus moving a model alias with the admin token.

Served by FastAPI on 127.0.0.1 by default; the page (``static/``: one HTML file, one script, one style sheet) ships
inside the package and loads nothing from elsewhere, so it works offline. The JSON API behind it:

- ``GET /api/runs?limit=&status=&q=``: the runs table, newest first (one SQLite query; 10,000 runs in well under a
  second: the summaries, which hold histories, are not read);
- ``GET /api/runs/{id}``: one run (config, metrics, summary, pictures, lineage);
- ``GET /api/runs/{id}/pictures/{file}``: a picture of that run (only the files the run lists, inside its folder);
- ``GET /api/compare?ids=a,b``: several runs' metrics and validation histories;
- ``GET /api/models``: model versions and aliases; ``POST /api/models/{name}/aliases/{alias}`` ``{"version": N}``
  moves an alias (``Authorization: Bearer TOKEN``; without ``--admin-token`` the UI is read-only).
"""

from __future__ import annotations

import hmac
import json
import math
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from shoal.artifacts.models import ModelNotFoundError, ModelRegistry
from shoal.artifacts.registry import DB_FILENAME, Registry, RegistryError, RunNotFoundError
from shoal.serving.docs import offline_docs

__all__ = ["PICTURES", "create_ui_app"]

STATIC = Path(__file__).resolve().parent / "static"
#: summary keys that name a run's pictures
PICTURES = ("learning_curve_png", "valid_curves_png", "test_curves_png", "valid_confusion_png", "test_confusion_png",
            "valid_regression_png", "test_regression_png")
_LIST_METRICS = ("valid_auc", "valid_ne", "valid_accuracy", "valid_macro_f1", "valid_rmse", "valid_r2", "valid_nmse",
                 "valid_micro_f1", "valid_mean_task_score", "valid_mean_ne", "test_auc", "test_ne", "test_accuracy",
                 "test_rmse")


class AliasMove(BaseModel):
    version: int = Field(ge=1)


def _plain(value: Any) -> Any:
    """``value`` as standard JSON: NaN and infinities (a one-class AUC, stored as Python's tokens) become null, and
    what JSON has no type for becomes its string."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int)):
        return value
    return str(value)


def _pictures(record_summary: dict[str, Any], run_dir: Path) -> list[str]:
    """File names of the run's pictures that exist inside its folder."""
    names = []
    for key in PICTURES:
        value = record_summary.get(key)
        if value and Path(value).parent.resolve() == run_dir.resolve() and Path(value).is_file():
            names.append(Path(value).name)
    compress = (record_summary.get("compress") or {}).get("png")
    if compress and Path(compress).parent.resolve() == run_dir.resolve() and Path(compress).is_file():
        names.append(Path(compress).name)
    return names


def create_ui_app(home: str | Path, admin_token: str | None = None) -> FastAPI:
    """The UI over the registry at ``home`` (which must exist: the UI never creates one)."""
    home = Path(home)
    db = home / DB_FILENAME
    app = FastAPI(title="shoal ui", docs_url=None, redoc_url=None)
    offline_docs(app, "/api/docs", "/api/docs-assets")

    def connect() -> sqlite3.Connection:
        if not db.is_file():
            raise HTTPException(404, f"no registry at {home}")
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        conn.execute("PRAGMA query_only = 1")
        return conn

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/api/runs")
    def runs(limit: int = Query(10_000, ge=1, le=1_000_000), status: str | None = None,
             q: str | None = None) -> Response:
        """Runs newest first: id, name, kind, status, model, parent, times and headline metrics."""
        where, args = [], []
        if status:
            where.append("status = ?")
            args.append(status)
        if q:
            where.append("(run_id LIKE ? OR name LIKE ? OR json_extract(config, '$.model.name') LIKE ?)")
            args += [f"%{q}%"] * 3
        # SQLite writes the JSON itself: 10,000 rows leave as one string, never as 10,000 Python dicts
        keys = ", ".join(f"'{k}'" for k in _LIST_METRICS)
        # NaN and infinities are stored as Python's tokens (a one-class AUC): null in standard JSON
        plain = "replace(replace(replace(metrics, '-Infinity', 'null'), 'Infinity', 'null'), 'NaN', 'null')"
        row = (f"json_object('run_id', run_id, 'name', name, 'kind', kind, 'status', status, 'created_at', created_at, "
               f"'finished_at', finished_at, 'parent', parent, 'model', CASE WHEN json_type(config, '$.model.name') = "
               f"'text' THEN json_extract(config, '$.model.name') END, 'metrics', "
               f"(SELECT json_group_object(key, value) FROM json_each(CASE WHEN json_valid({plain}) THEN {plain} "
               f"ELSE '{{}}' END) WHERE key IN ({keys})))")
        sql = (f"SELECT json_group_array(json(one)) FROM (SELECT {row} AS one FROM runs"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY created_at DESC, run_id DESC LIMIT ?)")
        with closing(connect()) as conn:
            (runs_json,) = conn.execute(sql, (*args, limit)).fetchone()
        return Response('{"home": ' + json.dumps(str(home)) + ', "runs": ' + (runs_json or "[]") + "}",
                        media_type="application/json")

    def record(run_id: str) -> Any:
        if not db.is_file():
            raise HTTPException(404, f"no registry at {home}")
        try:
            return Registry(home).get(run_id)
        except (RunNotFoundError, RegistryError) as err:
            raise HTTPException(404, str(err)) from None

    @app.get("/api/runs/{run_id}")
    def run(run_id: str) -> JSONResponse:
        r = record(run_id)
        summary = {k: v for k, v in r.summary.items() if k != "traceback"}
        return JSONResponse(_plain({
            "run_id": r.run_id, "name": r.name, "kind": r.kind, "status": r.status, "parent": r.parent,
            "created_at": r.created_at, "finished_at": r.finished_at, "config": r.config, "metrics": r.metrics,
            "summary": summary, "pictures": _pictures(r.summary, r.artifact_dir)}))

    @app.get("/api/runs/{run_id}/pictures/{name}")
    def picture(run_id: str, name: str) -> FileResponse:
        r = record(run_id)
        if name not in _pictures(r.summary, r.artifact_dir):
            raise HTTPException(404, f"run {r.run_id} has no picture {name!r}")
        return FileResponse(r.artifact_dir / name, media_type="image/png")

    @app.get("/api/compare")
    def compare(ids: str = Query(..., description="2 to 5 run ids or prefixes, comma-separated")) -> JSONResponse:
        refs = [i for i in ids.split(",") if i.strip()]
        if not 2 <= len(refs) <= 5:
            raise HTTPException(422, f"compare 2 to 5 runs, not {len(refs)}")
        out = []
        for ref in refs:
            r = record(ref.strip())
            out.append({"run_id": r.run_id, "name": r.name, "kind": r.kind, "metrics": r.metrics,
                        "model": (r.config.get("model") or {}).get("name") if isinstance(r.config.get("model"), dict)
                        else None, "history": r.summary.get("history") or []})
        return JSONResponse({"runs": _plain(out)})

    @app.get("/api/models")
    def models() -> JSONResponse:
        versions = ModelRegistry(home).versions() if db.is_file() else []
        return JSONResponse({"admin": admin_token is not None, "versions": [
            {"name": v.name, "version": v.version, "run_id": v.run_id, "created_at": v.created_at, "note": v.note,
             "aliases": list(v.aliases)} for v in versions]})

    @app.post("/api/models/{name}/aliases/{alias}")
    async def move_alias(name: str, alias: str, request: Request) -> JSONResponse:
        if admin_token is None:
            raise HTTPException(403, "the UI is read-only: start it with --admin-token (or SHOAL_ADMIN_TOKEN) to "
                                     "move aliases")
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {admin_token}".encode()):
            raise HTTPException(401, "a valid 'Authorization: Bearer TOKEN' header is needed to move an alias")
        body = await request.body()
        if len(body) > 1024:
            raise HTTPException(413, "the body is at most 1,024 bytes")
        try:
            move = AliasMove.model_validate_json(body or b"{}")
        except ValueError as err:
            raise HTTPException(422, f"expected {{\"version\": N}}: {err}") from None
        try:
            before = ModelRegistry(home).set_alias(name, alias, move.version)
        except ModelNotFoundError as err:
            raise HTTPException(404, str(err)) from None
        except ValueError as err:
            raise HTTPException(422, str(err)) from None
        return JSONResponse({"name": name, "alias": alias, "version": move.version, "previous": before})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
