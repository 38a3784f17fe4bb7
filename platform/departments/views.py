from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.permissions import Action, requires
from departments.selectors import membership_list_for_user


@requires(Action.DEPARTMENT_PICK)
def department_picker(request: HttpRequest) -> HttpResponse:
    memberships = membership_list_for_user(user=request.user)
    return render(request, "departments/picker.html", {"memberships": memberships})
