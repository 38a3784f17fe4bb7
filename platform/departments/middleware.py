"""Opens the department scope for every ``/d/<slug>/...`` request — the one place it happens.

Who may enter is the policy layer's answer (``Action.DEPARTMENT_ENTER``): a department the user
may not enter (unknown, inactive, or not a member) answers 404, exactly like a department that
does not exist, and the refusal is recorded; a signed-out visitor goes to the login page.
"""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.urls import Resolver404, resolve

from accounts.permissions import SignInRequired, department_entry
from departments.tenancy import department_scope

DEPARTMENT_URL_KWARG = "department_slug"


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
        try:
            membership = department_entry(request, slug)
        except SignInRequired:
            return redirect_to_login(request.get_full_path())
        request.department = membership.department
        request.membership = membership
        with department_scope(membership.department):
            return self.get_response(request)
