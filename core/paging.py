"""Pages of a list answer: a limit, and an opaque cursor naming where the next page starts.

A cursor is the sort key of the last item served, so a page stays correct while records are added: the next
page starts strictly after that key, whatever was inserted before it. Keys are JSON lists of strings.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence, TypeVar

from core.errors import ValidationFailed

DEFAULT_LIMIT, MAX_LIMIT = 50, 500
T = TypeVar("T")
SortKey = tuple[str, ...]


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_LIMIT
    after: SortKey | None = None  # decoded cursor: serve items whose key comes after this one


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None

    def to_json(self) -> dict[str, Any]:
        return {"items": self.items, "count": len(self.items), "next": self.next_cursor}


def page_request(limit: str | None, cursor: str | None) -> PageRequest:
    """Query-string values -> PageRequest; a bad value is a ValidationFailed naming the parameter."""
    size = DEFAULT_LIMIT
    if limit not in (None, ""):
        try:
            size = int(limit)
        except ValueError:
            raise ValidationFailed(f"limit must be an integer, got {limit!r}", field="limit") from None
        if not 1 <= size <= MAX_LIMIT:
            raise ValidationFailed(f"limit must be between 1 and {MAX_LIMIT}, got {size}", field="limit")
    return PageRequest(size, decode_cursor(cursor) if cursor else None)


def encode_cursor(key: SortKey) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key), separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> SortKey:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValidationFailed("cursor is not one this service gave out", field="cursor") from None
    if not isinstance(key, list) or not all(isinstance(part, str) for part in key):
        raise ValidationFailed("cursor is not one this service gave out", field="cursor")
    return tuple(key)


def paginate(items: Iterable[T], key: Callable[[T], SortKey], request: PageRequest, *, newest_first: bool = True,
             render: Callable[[T], Any] | None = None) -> Page:
    """Sort by `key` (descending when `newest_first`), skip to the cursor, and cut one page.

    `render` turns only the served items into their JSON (expensive work happens for one page, not all)."""
    ordered: Sequence[T] = sorted(items, key=key, reverse=newest_first)
    if request.after is not None:
        after = request.after
        ordered = [i for i in ordered if (key(i) < after if newest_first else key(i) > after)]
    served = list(ordered[:request.limit])
    more = len(ordered) > request.limit
    rendered = [render(i) for i in served] if render else served
    return Page(rendered, encode_cursor(key(served[-1])) if more and served else None)
