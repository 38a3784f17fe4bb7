"""Opens the department scope for every ``/d/<slug>/...`` request — the one place it happens.

A request for a department the user may not enter (unknown, inactive, or not a member) answers
404, exactly like a department that does not exist, and the denial is audited.
"""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.http import Http404
from django.urls import Resolver404, resolve

from compliance.events import EventType, Outcome
from compliance.services import audit_record
from departments.selectors import membership_get_for_entry
from departments.tenancy import department_scope

DEPARTMENT_URL_KWARG = "department_slug"
DEPARTMENT_NOT_FOUND = "No such department, or you are not a member of it."


class DepartmentScopeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return self.get_response(request)
        slug = match.kwargs.get(DEPARTMENT_URL_KWARG)
        if slug is None:
            return self.get_response(request)
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        membership = membership_get_for_entry(user=request.user, slug=slug)
        if membership is None:
            audit_record(
                event_type=EventType.ACCESS_DENIED,
                outcome=Outcome.DENIED,
                object_type="departments.department",
                object_repr=slug[:255],
                details={"path": request.path[:500], "reason": "not a member of this department"},
            )
            raise Http404(DEPARTMENT_NOT_FOUND)
        request.department = membership.department
        request.membership = membership
        with department_scope(membership.department):
            return self.get_response(request)
