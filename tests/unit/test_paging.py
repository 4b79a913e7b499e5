"""Pages: a cursor resumes strictly after the last item served, even when items are added in between."""
import pytest

from core.errors import ValidationFailed
from core.paging import MAX_LIMIT, PageRequest, decode_cursor, encode_cursor, page_request, paginate


def test_pages_cover_everything_once_newest_first():
    items = [{"k": f"{i:03d}"} for i in range(23)]
    seen, request = [], PageRequest(limit=5)
    while True:
        page = paginate(items, lambda d: (d["k"],), request)
        seen += [d["k"] for d in page.items]
        if page.next_cursor is None:
            break
        request = PageRequest(5, decode_cursor(page.next_cursor))
    assert seen == [f"{i:03d}" for i in reversed(range(23))]


def test_an_item_added_after_the_first_page_does_not_shift_the_next():
    items = [{"k": f"{i:02d}"} for i in range(10)]
    first = paginate(items, lambda d: (d["k"],), PageRequest(3))
    items.append({"k": "99"})  # newer than everything served: it belongs on a fresh first page, not the next
    second = paginate(items, lambda d: (d["k"],), PageRequest(3, decode_cursor(first.next_cursor)))
    assert [d["k"] for d in second.items] == ["06", "05", "04"]


def test_render_is_called_for_served_items_only():
    calls = []
    paginate(range(100), lambda i: (f"{i:03d}",), PageRequest(2), render=lambda i: calls.append(i) or i)
    assert calls == [99, 98]


@pytest.mark.parametrize("limit, cursor, field", [("0", None, "limit"), (str(MAX_LIMIT + 1), None, "limit"),
                                                  ("ten", None, "limit"), (None, "not-a-cursor!", "cursor"),
                                                  (None, encode_cursor(("a",))[:-2] + "{{", "cursor")])
def test_bad_limit_or_cursor_names_the_parameter(limit, cursor, field):
    with pytest.raises(ValidationFailed) as err:
        page_request(limit, cursor)
    assert err.value.field == field


def test_cursor_round_trip():
    assert decode_cursor(encode_cursor(("2013-04-01T00:00:00Z", "m/ü"))) == ("2013-04-01T00:00:00Z", "m/ü")
