"""The operators' page: one HTML file, its script and style, and plotly.js from the installed plotly package.

No build step and no network: every asset is served by the app itself, behind the same function key as the
list APIs it calls. The page renders everything in the browser from those APIs, so the server side is only
this loader. plotly is never imported (its import is slow); only the path of its bundled script is looked up.
"""
from __future__ import annotations

import gzip
import html
import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from core.errors import NotFound

STATIC = Path(__file__).with_name("static")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
# Inline styles are how plotly lays out its SVG; everything else comes from this app only.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",  # the page URL carries the function key
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    gzipped: bool


def plotly_js() -> Path:
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise NotFound("plotly is not installed: the dashboard needs its bundled plotly.min.js")
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    if not path.exists():
        raise NotFound(f"plotly.min.js is not at {path}")
    return path


def _path(name: str) -> Path:
    if name == "plotly.min.js":
        return plotly_js()
    if name in ("dashboard.js", "dashboard.css"):
        return STATIC / name
    raise NotFound(f"no dashboard asset {name!r}")


_cache: dict[tuple[str, bool], Asset] = {}
_lock = threading.Lock()


def asset(name: str, *, gzip_ok: bool) -> Asset:
    """A static asset by name (only the known ones), gzipped when the client takes it; built once."""
    key = (name, gzip_ok)
    with _lock:
        if key in _cache:
            return _cache[key]
    path = _path(name)
    raw = path.read_bytes()
    body = gzip.compress(raw, compresslevel=6, mtime=0) if gzip_ok else raw
    found = Asset(body, _TYPES[path.suffix], gzip_ok)
    with _lock:
        _cache[key] = found
    return found


def page(code: str | None) -> str:
    """The HTML page; asset URLs carry the caller's key (`?code=`) as the browser sends no header for them."""
    suffix = f"?code={quote(code, safe='')}" if code else ""
    template = (STATIC / "index.html").read_text(encoding="utf-8")
    return template.replace("{{suffix}}", html.escape(suffix, quote=True))
