"""The one upload path of a request: portal page, chat pane and REST API all store through here.

``RequestUpload(request)`` installs ``EncryptingUploadHandler`` as the request's only upload
handler before anything reads the body (so each multipart part is hashed and encrypted while it
streams, and a Content-Length over the limit is refused unread); ``store()`` then parses the
body, audits every refusal, hands each staged file to ``asset_upload`` and returns an
``UploadResult``. Callers render that result in their own protocol (portal HTML or JSON, the
chat's JSON, DRF responses); none of them loops over files or writes audit entries itself.

    with RequestUpload(request) as upload:   # the body is not read yet: check CSRF here
        result = upload.store(department=..., uploaded_by=..., acting_user=...)

Leaving the ``with`` block removes every temp file the request staged and did not store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from assets import rejections
from assets.models import Asset
from assets.rejections import AssetRejected
from assets.services import asset_upload, asset_upload_refused
from assets.upload_handlers import EncryptingUploadHandler, StagedUpload
from departments.models import Department

UPLOAD_FIELD = "file"


@dataclass(frozen=True)
class FileOutcome:
    """One file of the request: stored (``asset``; ``deduplicated`` when the department already
    held the same bytes) or refused (``rejection``, already audited)."""

    name: str
    asset: Asset | None = None
    deduplicated: bool = False
    rejection: AssetRejected | None = None

    def as_dict(self, links: dict[str, str] | None = None) -> dict[str, Any]:
        if self.rejection is not None:
            return {"name": self.name, **self.rejection.as_dict()}
        return {
            "name": self.name,
            "id": str(self.asset.pk),
            **(links or {}),
            "sha256": self.asset.sha256,
            "deduplicated": self.deduplicated,
        }


@dataclass(frozen=True)
class UploadResult:
    """What one request's upload came to: either the request as a whole was refused
    (``rejection``: too large to read, no file), or one outcome per file, in the order refused
    while streaming, then stored or refused by ``asset_upload``."""

    files: tuple[FileOutcome, ...] = ()
    rejection: AssetRejected | None = None

    @property
    def status(self) -> int:
        """The HTTP status of the worst refusal; 200 when every file was stored."""
        if self.rejection is not None:
            return self.rejection.status
        return max([200, *(item.rejection.status for item in self.files if item.rejection is not None)])

    @property
    def headers(self) -> dict[str, str]:
        """Headers for the response: ``Retry-After`` when a refusal was only the server being
        busy (every decode slot taken), the longest such wait."""
        refusals = [self.rejection] if self.rejection is not None else [item.rejection for item in self.files]
        waits = [refusal.retry_after for refusal in refusals if refusal is not None and refusal.retry_after]
        return {"Retry-After": str(max(waits))} if waits else {}

    @property
    def stored(self) -> list[FileOutcome]:
        return [item for item in self.files if item.asset is not None]

    def as_dict(self, links: Callable[[Asset], dict[str, str]] | None = None) -> dict[str, Any]:
        """The portal's JSON (file page and chat pane): ``{"files": [...]}``, the refusal's
        ``code``/``detail`` at the top as well when a single file was refused, or only the
        request's refusal. ``links(asset)`` adds the caller's URLs to each stored file."""
        if self.rejection is not None:
            return self.rejection.as_dict()
        items = [item.as_dict(links(item.asset) if links and item.asset else None) for item in self.files]
        if self.status != 200 and len(items) == 1:
            return {**items[0], "files": items}
        return {"files": items}


class RequestUpload:
    """The encrypting upload handler installed on ``request`` (a Django ``HttpRequest`` or a DRF
    ``Request``), and the store step that follows; a context manager that cleans up on exit."""

    def __init__(self, request: Any) -> None:
        # A DRF Request parses through the HttpRequest it wraps: the handler must sit there.
        http_request = getattr(request, "_request", request)
        self.handler = EncryptingUploadHandler(http_request)
        http_request.upload_handlers = [self.handler]  # raises if the body was already parsed
        self._request = request

    def __enter__(self) -> RequestUpload:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.handler.discard_all()

    def store(
        self, *, department: Department, uploaded_by: Any, acting_user: Any = None, single: bool = False
    ) -> UploadResult:
        """Parse the body through the handler and store every staged file in ``department``.

        ``single``: the request must carry exactly one file (the REST API); a refusal while
        streaming then answers for the whole request and nothing else is stored.
        """
        acting_user = acting_user if acting_user is not None else uploaded_by
        files = self._request.FILES.getlist(UPLOAD_FIELD)  # the body is read here, through the handler

        def refused(rejection: AssetRejected, name: str = "") -> AssetRejected:
            asset_upload_refused(
                department=department, acting_user=acting_user, original_name=name, rejection=rejection
            )
            return rejection

        if self.handler.request_rejection is not None:
            return UploadResult(rejection=refused(self.handler.request_rejection))
        # Refused while streaming (type, size, empty, interrupted): audited like the others.
        outcomes = [
            FileOutcome(name=item.file_name, rejection=refused(item.rejection, item.file_name))
            for item in self.handler.rejections
        ]
        uploads = [upload for upload in files if isinstance(upload, StagedUpload)]
        if single and outcomes:
            return UploadResult(files=(outcomes[0],))
        if (single and len(uploads) != 1) or not (outcomes or uploads):
            return UploadResult(rejection=refused(rejections.no_file()))
        for upload in uploads:
            try:
                asset = asset_upload(
                    department=department,
                    uploaded_by=uploaded_by,
                    stream=upload.staged,
                    original_name=upload.client_name,
                    acting_user=acting_user,
                )
            except AssetRejected as rejection:  # audited by asset_upload
                outcomes.append(FileOutcome(name=upload.client_name, rejection=rejection))
                continue
            deduplicated = asset.storage_name != upload.staged.storage_name
            outcomes.append(FileOutcome(name=asset.original_name, asset=asset, deduplicated=deduplicated))
        return UploadResult(files=tuple(outcomes))
