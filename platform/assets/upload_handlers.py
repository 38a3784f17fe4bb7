"""A Django upload handler that streams multipart file parts straight into the encrypting stager.

Django's default handlers keep small files in memory and spool larger ones
(> ``FILE_UPLOAD_MAX_MEMORY_SIZE``) to a **plaintext** temp file. With this handler installed
(``request.upload_handlers = [EncryptingUploadHandler(request)]`` before anything reads
``request.POST``/``FILES``) each part is hashed, encrypted and written to the storage
directory's temp area as it arrives; ``request.FILES`` then holds ``StagedUpload`` objects that
``assets.services.asset_upload`` accepts as its ``stream``. Views never install it themselves:
``assets.uploads.RequestUpload`` does, for the portal, the chat and the REST API alike.

Refusals (too large, wrong type by its first bytes, empty, interrupted) are collected in
``handler.rejections``; a request whose Content-Length already exceeds the limit is refused
before a byte of it is read. Temp files are removed on every path: by ``StagedUpload.close()``
(Django closes every uploaded file at the end of the request) and by ``discard_all()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile, StopFutureHandlers
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict

from assets import rejections
from assets.rejections import AssetRejected
from assets.services import max_upload_bytes
from assets.storage import BlobStager, StagedBlob

# Room for the multipart boundaries and headers around the file(s) of one request.
MULTIPART_OVERHEAD = 1024 * 1024


class StagedUpload(UploadedFile):
    """An uploaded file that exists only as an encrypted staged blob (no plaintext access)."""

    def __init__(self, staged: StagedBlob, *, client_name: str, content_type: str) -> None:
        super().__init__(file=None, name=client_name, content_type=content_type, size=staged.size)
        self.staged = staged
        self.client_name = client_name  # as the client sent it (after Django's own clean-up)

    def open(self, mode=None):
        raise OSError("a staged upload is encrypted; pass it to assets.services.asset_upload")

    def read(self, *args, **kwargs):
        raise OSError("a staged upload is encrypted; pass it to assets.services.asset_upload")

    def chunks(self, chunk_size=None):
        raise OSError("a staged upload is encrypted; pass it to assets.services.asset_upload")

    def close(self) -> None:
        # Committed blobs stay; anything the view did not store is removed with the request.
        self.staged.discard()

    @property
    def closed(self) -> bool:
        return self.staged.committed or not self.staged.temp_path.exists()


@dataclass
class UploadRejection:
    field_name: str
    file_name: str
    rejection: AssetRejected


class EncryptingUploadHandler(FileUploadHandler):
    chunk_size = 256 * 1024

    def __init__(self, request=None) -> None:
        super().__init__(request)
        self.max_bytes = max_upload_bytes()
        self.staged: list[StagedBlob] = []
        self.rejections: list[UploadRejection] = []
        self.request_rejection: AssetRejected | None = None
        self._stager: BlobStager | None = None

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length is not None and content_length > self.max_bytes + MULTIPART_OVERHEAD:
            # Refuse without reading the body: an empty POST/FILES is the parse result.
            self.request_rejection = rejections.too_large(self.max_bytes)
            return QueryDict(encoding=encoding), MultiValueDict()
        return None

    def new_file(self, field_name, file_name, content_type, content_length, charset=None, content_type_extra=None):
        super().new_file(field_name, file_name, content_type, content_length, charset, content_type_extra)
        self._stager = BlobStager(max_bytes=self.max_bytes)
        raise StopFutureHandlers  # no other handler may see (and spool) the plaintext

    def _reject(self, rejection: AssetRejected) -> None:
        if self._stager is not None:
            self._stager.abort()
            self._stager = None
        self.rejections.append(UploadRejection(self.field_name, self.file_name, rejection))

    def receive_data_chunk(self, raw_data, start):
        if self._stager is None:
            return None
        try:
            self._stager.write(raw_data)
        except AssetRejected as rejection:
            self._reject(rejection)
            raise SkipFile() from None
        return None

    def file_complete(self, file_size):
        stager, self._stager = self._stager, None
        if stager is None:
            return None
        try:
            staged = stager.finish()
        except AssetRejected as rejection:
            self.rejections.append(UploadRejection(self.field_name, self.file_name, rejection))
            return None
        self.staged.append(staged)
        return StagedUpload(staged, client_name=self.file_name, content_type=self.content_type or "")

    def upload_interrupted(self) -> None:
        if self._stager is not None:
            self._reject(rejections.incomplete_upload())

    def discard_all(self) -> None:
        """Remove every temp file this request staged and did not commit."""
        if self._stager is not None:
            self._stager.abort()
            self._stager = None
        for staged in self.staged:
            staged.discard()
