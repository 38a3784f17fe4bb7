from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from accounts.navigation import console_links
from accounts.permissions import Action, is_administrator, requires
from departments.selectors import membership_list_for_user


def landing_url(request: HttpRequest) -> str:
    """Where a person lands after signing in with no page of their own in mind: straight into
    their department when they have exactly one, else the picker (for administrators, their
    consoles: the picker's page is their landing page)."""
    picker = reverse("departments:picker")
    user = request.user
    if is_administrator(user):
        return picker
    memberships = list(membership_list_for_user(user=user)[:2])
    if len(memberships) == 1:
        return reverse("chat:home", args=[memberships[0].department.slug])
    return picker


@requires(Action.DEPARTMENT_PICK)
def department_picker(request: HttpRequest) -> HttpResponse:
    if is_administrator(request.user):
        # The three administrators hold no department (SM-1..3): their work is in the consoles,
        # of which the page shows those the policy layer lets them open from where they are.
        return render(request, "accounts/landing.html", {"console_links": console_links(request)})
    memberships = membership_list_for_user(user=request.user)
    return render(request, "departments/picker.html", {"memberships": memberships})
