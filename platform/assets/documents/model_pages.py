"""Which pages of a file a model request is shown, and their images (chat, ``/v1``).

A paged document — a PDF, an Office file (its rendered text pages, then its pictures), a DICOM
file (its frames) — gives the model at most ``MODEL_PAGES_PER_FILE`` pages (more when the person pinned more),
within what the request's image budget has left. Which ones, in this order of preference:

1. the pages the question names ("p. 23–25", "第7页": ``retrieval.pinned_pages``), whether or not
   the file has a text layer yet;
2. the best BM25 pages for the question's text (``retrieval.rank_pages`` over the text layer);
3. when there is no text layer, or nothing matched and nothing was pinned: the first pages, as
   before retrieval existed.

Pages known not to decode are never chosen. The chosen pages are rendered in document order
(reading order for the model). An image file is its one page. ``page_refs`` is what an answer
records of the pages it drew on: ``[{"asset": "<uuid>", "page": n}, …]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from assets import content
from assets.documents.retrieval import pinned_pages, rank_pages
from assets.reading import (
    DEFAULT_MODEL_SIDE,
    AssetUnreadable,
    asset_document_pages,
    asset_open_reader,
    asset_page_images,
)


@dataclass(frozen=True)
class PageChoice:
    """The pages of one file a request sends, in document order; how they were chosen."""

    pages: tuple[int, ...]
    how: str  # "image" (an image file), "first" (the first pages), "retrieved" (pinned and/or BM25)
    pinned: tuple[int, ...] = ()

    @property
    def first_pages(self) -> bool:
        return self.pages == tuple(range(1, len(self.pages) + 1))


def _paged(asset) -> bool:
    """A document of pages (PDF, Office, DICOM), as opposed to an image file (its one page)."""
    return content.KINDS[asset.content_type] not in content.IMAGE_KINDS


def _document_text(asset):
    from assets.documents.selectors import document_text

    return document_text(asset)


def pages_choose(asset, query: str, *, limit: int, per_file: int = content.MODEL_PAGES_PER_FILE) -> PageChoice:
    """The pages of ``asset`` a request about ``query`` sends: at most ``limit`` (what the image
    budget has left), ``per_file`` unless more are pinned. Decodes nothing."""
    if not _paged(asset):
        return PageChoice(pages=(1,) if limit > 0 else (), how="image")
    count = max(0, min(limit, asset.page_count))
    if count == 0:
        return PageChoice(pages=(), how="first")
    unusable = {page for page in asset.unusable_pages or () if isinstance(page, int)}
    pinned = tuple(page for page in pinned_pages(query, asset.page_count) if page not in unusable)
    wanted = min(count, max(per_file, len(pinned)))
    chosen = list(pinned[:wanted])
    document = _document_text(asset)
    if document is not None and len(chosen) < wanted:
        unusable |= {page.number for page in document.pages if not page.usable}
        for page, _score in rank_pages(document, query, limit=wanted + len(unusable) + len(chosen)):
            if len(chosen) >= wanted:
                break
            if page not in chosen and page not in unusable and page <= asset.page_count:
                chosen.append(page)
    if not chosen:
        return PageChoice(pages=tuple(range(1, min(per_file, count) + 1)), how="first")
    return PageChoice(pages=tuple(sorted(chosen)), how="retrieved", pinned=pinned[:wanted])


def pages_recorded(asset, pages, *, limit: int) -> PageChoice:
    """The pages an earlier answer recorded for ``asset`` (sent again with the history), within
    ``limit``; the first pages when none were recorded (answers made before retrieval)."""
    if not _paged(asset):
        return PageChoice(pages=(1,) if limit > 0 else (), how="image")
    known = sorted({page for page in pages if isinstance(page, int) and 1 <= page <= asset.page_count})
    if not known:
        count = min(limit, content.MODEL_PAGES_PER_FILE, asset.page_count)
        return PageChoice(pages=tuple(range(1, max(0, count) + 1)), how="first")
    return PageChoice(pages=tuple(known[: max(0, limit)]), how="retrieved")


def pages_cost(asset, choice: PageChoice, *, max_side: int = DEFAULT_MODEL_SIDE) -> content.DecodeCost:
    """What rendering ``choice`` costs, from the stored dimensions alone (image_budget)."""
    kind = content.KINDS[asset.content_type]
    if not _paged(asset):
        return content.decode_cost(
            kind, width=asset.width, height=asset.height, pages=1, max_pages=1, max_side=max_side
        )
    pages = len(choice.pages)
    # A PDF or Office page is rendered at most max_side square; a DICOM frame decodes its own pixels.
    return content.decode_cost(
        kind, width=asset.width, height=asset.height, pages=pages, max_pages=pages, max_side=max_side
    )


def pages_unusable(asset, choice: PageChoice) -> int | None:
    """The first chosen page already known not to decode, if any."""
    marked = [page for page in choice.pages if page in (asset.unusable_pages or ())]
    return min(marked) if marked else None


def pages_images(asset, choice: PageChoice, *, max_side: int = DEFAULT_MODEL_SIDE) -> list[Image.Image]:
    """RGB images of the chosen pages, longest side at most ``max_side``, in one decode slot.
    Raises AssetUnreadable (a page marked before, or one that fails now and is marked) and
    ``content.DecodeBusy``."""
    if not choice.pages:
        return []
    if not _paged(asset) or choice.first_pages:  # the path every request took before retrieval
        return asset_page_images(asset, max_pages=len(choice.pages), max_side=max_side)
    known = pages_unusable(asset, choice)
    if known is not None:
        raise AssetUnreadable(asset, known)
    if not asset.is_pdf:  # Office pages and DICOM frames: only the chosen ones are drawn/decoded
        with content.decode_slot():
            return asset_document_pages(asset, choice.pages, max_side=max_side)
    try:
        with asset_open_reader(asset) as reader, content.decode_slot():
            return _render(reader, choice.pages, max_side=max_side)
    except content.PageUnreadable as failure:
        from assets.services import asset_page_unusable_mark

        asset_page_unusable_mark(asset=asset, page=failure.page)
        raise AssetUnreadable(asset, failure.page) from None


def _render(reader, pages: tuple[int, ...], *, max_side: int) -> list[Image.Image]:
    return content.pdf_pages_render(reader, lambda _count: pages, max_side=max_side)


def page_refs(asset, choice: PageChoice) -> list[dict]:
    """What an answer records of the pages it drew on (a document's pages; an image file records none)."""
    if not _paged(asset):
        return []
    return [{"asset": str(asset.pk), "page": page} for page in choice.pages]


# The larger view a page thumbnail opens (the chat's "pages drawn on").
PAGE_VIEW_SIDE = 1200


def page_png(asset, page: int, *, side: int) -> bytes:
    """One page as a PNG made on the fly, kept only in memory (a thumbnail of that page)."""
    import io

    (image,) = pages_images(asset, PageChoice(pages=(page,), how="retrieved"), max_side=side)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
