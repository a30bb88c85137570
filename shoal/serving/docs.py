"""The interactive API docs (Swagger UI) served from the package, not from a CDN, so ``/docs`` works offline.

FastAPI's default ``/docs`` page loads Swagger UI's script and style sheet from cdn.jsdelivr.net; on a machine
without internet the page stays blank. :func:`offline_docs` serves the copy that ships with the
``swagger-ui-bundle`` package instead.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["offline_docs"]


def offline_docs(app: FastAPI, path: str = "/docs", assets: str = "/docs-assets") -> None:
    """Serve Swagger UI for ``app.openapi_url`` at ``path``, its files under ``assets`` (create the app with
    ``docs_url=None``)."""
    import swagger_ui_bundle

    app.mount(assets, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    title = f"{app.title}: API"

    @app.get(path, include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=title,
                                   swagger_js_url=f"{assets}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{assets}/swagger-ui.css",
                                   swagger_favicon_url=f"{assets}/favicon-32x32.png")
