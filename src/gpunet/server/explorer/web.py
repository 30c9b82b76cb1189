"""Rendering the explorer's pages: one Jinja2 environment (autoescaped), the headers
every page carries, and conditional GETs.

Pages carry a Content-Security-Policy that allows scripts, styles and images from this
origin only: no inline script or style, no framing, forms posting back here only. The
public pages are the same for everyone (nothing per visitor is rendered in them; the
owner's cookies are scoped to /account), so they are cacheable and answer
`If-None-Match` with 304.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal
from importlib import resources
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}
PUBLIC_CACHE = "public, max-age=30"
TEMPLATES = resources.files("gpunet.server.explorer") / "templates"
STATIC = resources.files("gpunet.server.explorer") / "static"


def _grouped(value: int | float | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{int(value):,}"


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _tokens(base_units: str | int | None, decimals: int = 18) -> str:
    """Base units shown as whole tokens (18 decimals), exactly, trailing zeros cut."""
    if base_units is None:
        return "—"
    q = Decimal(int(base_units)).scaleb(-decimals)
    text = f"{q:,.{decimals}f}".rstrip("0").rstrip(".")
    return text or "0"


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html", "svg"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(grouped=_grouped, when=_when, tokens=_tokens)
    return env


class Pages:
    """Renders templates into responses with the explorer's headers."""

    def __init__(self, public_url: str) -> None:
        self.env = environment()
        self.public_url = public_url.rstrip("/")

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        *,
        status: int = 200,
        public: bool = True,
        headers: dict[str, str] | None = None,
    ) -> Response:
        body = self.env.get_template(template).render(
            public_url=self.public_url, path=request.url.path, **context
        ).encode()
        out = {**PAGE_HEADERS, **(headers or {})}
        if not public or status != 200:
            return HTMLResponse(body, status_code=status, headers=out)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        out |= {"ETag": etag, "Cache-Control": PUBLIC_CACHE, "Vary": "Accept-Encoding"}
        if etag in _etags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers=out)
        return HTMLResponse(body, headers=out)


def _etags(header: str) -> set[str]:
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}
