"""What Laravel's `LengthAwarePaginator::toArray()` puts around a page of records.

Owns the paginator's keys, in Laravel's order, and its `links` window (`UrlWindow` with
`onEachSide = 3`, the English `pagination.previous` / `pagination.next` labels). Page URLs are
`<path>?page=N` (Laravel appends only `page` unless the app calls `withQueryString()`).
It must not know records, JSON bytes or HTTP; `zorio.py` supplies the path and the data.
"""

from __future__ import annotations

import math

ON_EACH_SIDE = 3
PREVIOUS_LABEL = "&laquo; Previous"
NEXT_LABEL = "Next &raquo;"


def last_page(total: int, per_page: int) -> int:
    return max(1, math.ceil(total / per_page))


def window(current: int, last: int, on_each_side: int = ON_EACH_SIDE) -> list[int | None]:
    """The page numbers `links` shows, None for a "..." gap (UrlWindow::get + elements())."""
    if last < on_each_side * 2 + 8:
        return list(range(1, last + 1))
    slide = on_each_side + 4
    if current <= slide:
        return [*range(1, slide + on_each_side + 1), None, last - 1, last]
    if current > last - slide:
        return [1, 2, None, *range(last - (slide + on_each_side - 1), last + 1)]
    return [
        1,
        2,
        None,
        *range(current - on_each_side, current + on_each_side + 1),
        None,
        last - 1,
        last,
    ]


def paginator_fields(
    path: str, current: int, per_page: int, total: int, count: int
) -> list[tuple[str, object]]:
    """toArray()'s (key, value) pairs in order; the value of "data" is left to the caller (None).

    `path` is the absolute URL without query; `count` is the number of records on this page.
    """
    last = last_page(total, per_page)

    def url(page: int) -> str:
        return f"{path}?page={max(page, 1)}"

    prev_url = url(current - 1) if current > 1 else None
    next_url = url(current + 1) if current < last else None
    links: list[dict[str, object]] = [{"url": prev_url, "label": PREVIOUS_LABEL, "active": False}]
    for page in window(current, last):
        if page is None:
            links.append({"url": None, "label": "...", "active": False})
        else:
            links.append({"url": url(page), "label": str(page), "active": page == current})
    links.append({"url": next_url, "label": NEXT_LABEL, "active": False})
    first_item = (current - 1) * per_page + 1 if count else None
    return [
        ("current_page", current),
        ("data", None),
        ("first_page_url", url(1)),
        ("from", first_item),
        ("last_page", last),
        ("last_page_url", url(last)),
        ("links", links),
        ("next_page_url", next_url),
        ("path", path),
        ("per_page", per_page),
        ("prev_page_url", prev_url),
        ("to", first_item + count - 1 if first_item is not None else None),
        ("total", total),
    ]
