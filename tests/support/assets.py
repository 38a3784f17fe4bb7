"""Storing a file as a department's asset through the assets service, as an upload would."""

from __future__ import annotations


def asset_upload_bytes(data: bytes, name: str, *, department, uploaded_by):
    """``data`` stored as ``name`` in ``department`` by ``uploaded_by`` (inside the department's
    scope, as a request of that department runs); returns the asset."""
    from assets.services import asset_upload
    from departments.tenancy import department_scope

    with department_scope(department):
        return asset_upload(department=department, uploaded_by=uploaded_by, stream=iter([data]), original_name=name)
