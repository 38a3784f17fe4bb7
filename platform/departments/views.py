from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from departments.selectors import membership_list_for_user


@login_required
def department_picker(request: HttpRequest) -> HttpResponse:
    memberships = membership_list_for_user(user=request.user)
    return render(request, "departments/picker.html", {"memberships": memberships})


@login_required
def department_home(request: HttpRequest, department_slug: str) -> HttpResponse:
    # DepartmentScopeMiddleware has already checked membership and opened the scope.
    return render(
        request,
        "departments/home.html",
        {"department": request.department, "membership": request.membership},
    )
