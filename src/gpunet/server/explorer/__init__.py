"""The explorer's web pages, served by the coordinator at `/` (docs/explorer.md).

Public pages render only what the public JSON explorer serves (`api.explorer_views`);
owners sign in under /account to see their own devices. No script runs inline and
nothing is fetched from elsewhere: templates, the stylesheet and plots (inline SVG)
all come from this package.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from gpunet.server.explorer import oidc, owner, pages
from gpunet.server.explorer.cookies import CookieJar
from gpunet.server.explorer.web import STATIC, Pages
from gpunet.server.security.secrets import derive_key
from gpunet.server.state import AppState


class CachedStatic(StaticFiles):
    """The stylesheet and script, with an hour's cache (they carry ETags already)."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "public, max-age=3600"
        return response


def mount(app: FastAPI, state: AppState) -> None:
    settings = state.settings
    app.state.explorer_pages = Pages(settings.public_url)
    app.state.explorer_cookies = CookieJar(
        derive_key(settings.secret_key.get_secret_value(), "explorer-cookies"),
        secure=not settings.development,
    )
    app.mount("/static", CachedStatic(directory=str(STATIC)), name="static")
    for module in (pages, owner, oidc):
        app.include_router(module.router)
