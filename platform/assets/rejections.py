"""Why an upload is refused: one exception carrying a stable code, an HTTP status and a message.

The messages are module constants that tests import; views (portal and API) answer with
``status`` and ``message`` so every refusal is a clear 400/413, never a 500.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

TOO_LARGE = _("The file is larger than the limit of {limit_mb} MB.")
QUOTA_EXCEEDED = _("The department's storage quota of {quota_mb} MB would be exceeded.")
EMPTY_FILE = _("The file is empty.")
UNSUPPORTED_TYPE = _(
    "Unsupported file type: only JPEG, PNG, BMP, WebP, TIFF, GIF, PDF, DOCX, XLSX, PPTX and DICOM files are accepted."
)
AMBIGUOUS_CONTENT = _("The file's content is ambiguous (it looks like more than one format) and is refused.")
UNREADABLE_IMAGE = _("The image could not be decoded: it is damaged or truncated.")
TOO_MANY_PIXELS = _("The image has too many pixels ({pixels}); the limit is {limit}.")
UNREADABLE_PDF = _("The PDF could not be opened: it is damaged, truncated or encrypted.")
UNREADABLE_PDF_PAGE = _("Page {page} of the PDF could not be read: the file is damaged.")
DECODE_BUSY = _("The server is busy checking other files; try again in {retry_after} seconds.")
TOO_MANY_PAGES = _("The PDF has {pages} pages; the limit is {limit}.")
INCOMPLETE_UPLOAD = _("The upload was interrupted before the file was complete.")
NO_FILE = _("No file was sent.")
BAD_NAME = _("The file name is missing or invalid.")
# Office files (DOCX/XLSX/PPTX) and DICOM: see docs/assets.md, "Office files" and "DICOM".
OFFICE_MACROS = _("Office files with macros, ActiveX controls or embedded OLE objects are not accepted.")
OFFICE_ENCRYPTED = _(
    "Password-protected and legacy binary Office files are not accepted: save the document as an "
    "unprotected DOCX, XLSX or PPTX file."
)
OFFICE_TOO_BIG = _("The Office file's archive exceeds a safety limit ({limit}) and is refused.")
OFFICE_LIMIT_ENTRIES = _("{count} entries")
OFFICE_LIMIT_SIZE = _("{size_mb} MB uncompressed")
OFFICE_LIMIT_RATIO = _("a compression ratio of {ratio}:1 for one entry")
OFFICE_UNSAFE_XML = _("The Office file contains XML with a document type or entity declarations and is refused.")
OFFICE_EXTERNAL = _("The Office file links to external content (an external relationship) and is refused.")
OFFICE_UNREADABLE = _("The Office file could not be read: it is damaged or not a DOCX, XLSX or PPTX document.")
OFFICE_TOO_LONG = _("The document is too long: its text would fill more than {limit} pages.")
OFFICE_IMAGES = _("The Office file holds more than {limit} embedded images.")
DICOM_BURNED_IN = _(
    "The DICOM image is marked as having patient identifiers burned into its pixels "
    "(BurnedInAnnotation = YES) and cannot be de-identified: it is refused."
)
DICOM_UNSUPPORTED_COMPRESSION = _(
    "The DICOM file's compression ({syntax}) cannot be decoded on this server; send it uncompressed."
)
DICOM_UNREADABLE = _("The DICOM file could not be read: it is damaged or holds no image.")
DICOM_TOO_MANY_FRAMES = _("The DICOM file has {frames} frames; the limit is {limit}.")


class AssetRejected(Exception):
    """An upload refused for a reason the uploader can act on; nothing of it is stored."""

    def __init__(self, code: str, message: str, *, status: int = 400, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = str(message)
        self.status = status
        self.retry_after = retry_after  # seconds, for a refusal that a later try may not meet

    def as_dict(self) -> dict[str, str | int]:
        if self.retry_after is None:
            return {"code": self.code, "detail": self.message}
        return {"code": self.code, "detail": self.message, "retry_after": self.retry_after}

    @property
    def headers(self) -> dict[str, str]:
        """The response headers the refusal needs (``Retry-After`` for a transient one)."""
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}


def too_large(limit_bytes: int) -> AssetRejected:
    return AssetRejected("too_large", TOO_LARGE.format(limit_mb=limit_bytes // (1024 * 1024)), status=413)


def quota_exceeded(quota_bytes: int) -> AssetRejected:
    return AssetRejected("quota_exceeded", QUOTA_EXCEEDED.format(quota_mb=quota_bytes // (1024 * 1024)), status=413)


def empty_file() -> AssetRejected:
    return AssetRejected("empty", EMPTY_FILE)


def unsupported_type() -> AssetRejected:
    return AssetRejected("unsupported_type", UNSUPPORTED_TYPE)


def ambiguous_content() -> AssetRejected:
    return AssetRejected("ambiguous", AMBIGUOUS_CONTENT)


def unreadable_image() -> AssetRejected:
    return AssetRejected("unreadable_image", UNREADABLE_IMAGE)


def too_many_pixels(pixels: int, limit: int) -> AssetRejected:
    return AssetRejected("too_many_pixels", TOO_MANY_PIXELS.format(pixels=pixels, limit=limit), status=413)


def unreadable_pdf() -> AssetRejected:
    return AssetRejected("unreadable_pdf", UNREADABLE_PDF)


def unreadable_pdf_page(page: int) -> AssetRejected:
    return AssetRejected("unreadable_pdf", UNREADABLE_PDF_PAGE.format(page=page))


def busy(retry_after: int) -> AssetRejected:
    return AssetRejected("busy", DECODE_BUSY.format(retry_after=retry_after), status=503, retry_after=retry_after)


def too_many_pages(pages: int, limit: int) -> AssetRejected:
    return AssetRejected("too_many_pages", TOO_MANY_PAGES.format(pages=pages, limit=limit), status=413)


def incomplete_upload() -> AssetRejected:
    return AssetRejected("incomplete", INCOMPLETE_UPLOAD)


def no_file() -> AssetRejected:
    return AssetRejected("no_file", NO_FILE)


def bad_name() -> AssetRejected:
    return AssetRejected("bad_name", BAD_NAME)


def office_macros() -> AssetRejected:
    return AssetRejected("office_macros", OFFICE_MACROS)


def office_encrypted() -> AssetRejected:
    return AssetRejected("office_encrypted", OFFICE_ENCRYPTED)


def office_too_big(*, entries: int = 0, size_bytes: int = 0, ratio: int = 0) -> AssetRejected:
    """The one limit exceeded: ``entries``, ``size_bytes`` (uncompressed) or ``ratio``."""
    if entries:
        limit = OFFICE_LIMIT_ENTRIES.format(count=entries)
    elif size_bytes:
        limit = OFFICE_LIMIT_SIZE.format(size_mb=size_bytes // (1024 * 1024))
    else:
        limit = OFFICE_LIMIT_RATIO.format(ratio=ratio)
    return AssetRejected("office_archive_limit", OFFICE_TOO_BIG.format(limit=limit), status=413)


def office_unsafe_xml() -> AssetRejected:
    return AssetRejected("office_unsafe_xml", OFFICE_UNSAFE_XML)


def office_external() -> AssetRejected:
    return AssetRejected("office_external_relationship", OFFICE_EXTERNAL)


def office_unreadable() -> AssetRejected:
    return AssetRejected("unreadable_office", OFFICE_UNREADABLE)


def office_too_long(limit: int) -> AssetRejected:
    return AssetRejected("too_many_pages", OFFICE_TOO_LONG.format(limit=limit), status=413)


def office_images(limit: int) -> AssetRejected:
    return AssetRejected("too_many_images", OFFICE_IMAGES.format(limit=limit), status=413)


def dicom_burned_in() -> AssetRejected:
    return AssetRejected("dicom_burned_in_annotation", DICOM_BURNED_IN)


def dicom_unsupported_compression(syntax: str) -> AssetRejected:
    return AssetRejected("dicom_unsupported_compression", DICOM_UNSUPPORTED_COMPRESSION.format(syntax=syntax))


def dicom_unreadable() -> AssetRejected:
    return AssetRejected("unreadable_dicom", DICOM_UNREADABLE)


def dicom_too_many_frames(frames: int, limit: int) -> AssetRejected:
    return AssetRejected("too_many_pages", DICOM_TOO_MANY_FRAMES.format(frames=frames, limit=limit), status=413)
