"""Session bookkeeping hooked to the events that must end sessions.

Model signals rather than services alone: the admin console, services and the directory sync all
change users and memberships, and each of those paths must end the sessions it invalidates.
(``QuerySet.update()`` bypasses signals; nothing in the platform updates these rows in bulk.)
"""

from __future__ import annotations

import time

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from accounts.models import User
from accounts.permissions import department_role_loses_grants
from accounts.sessions import (
    SESSION_LAST_SEEN_KEY,
    SESSION_LOGIN_AT_KEY,
    session_forget,
    session_record,
    sessions_end_for_user,
    websocket_terminate,
)
from departments.models import Membership


@receiver(user_logged_in, dispatch_uid="accounts.session_on_login")
def record_session_on_login(sender, request, user, **kwargs) -> None:
    session = request.session
    now = time.time()
    session[SESSION_LOGIN_AT_KEY] = now
    session[SESSION_LAST_SEEN_KEY] = now
    if session.session_key is None:
        session.save()  # the key exists only once saved; login() has already rotated it
    session_record(user=user, session_key=session.session_key)


@receiver(user_logged_out, dispatch_uid="accounts.session_on_logout")
def forget_session_on_logout(sender, request, user, **kwargs) -> None:
    if request is not None and request.session.session_key:
        session_forget(session_key=request.session.session_key)
    if user is not None:
        websocket_terminate(user_id=user.pk, reason="logout")


@receiver(pre_save, sender=User, dispatch_uid="accounts.user_before_save")
def remember_user_state(sender, instance: User, update_fields=None, **kwargs) -> None:
    instance._state_before = None
    if instance.pk is None:
        return
    if update_fields is not None and not ({"is_active", "admin_role"} & set(update_fields)):
        return  # e.g. last_login on every login: nothing that could end sessions
    instance._state_before = User.objects.filter(pk=instance.pk).values("is_active", "admin_role").first()


@receiver(post_save, sender=User, dispatch_uid="accounts.user_after_save")
def end_sessions_on_disable_or_role_change(sender, instance: User, created: bool, **kwargs) -> None:
    before = getattr(instance, "_state_before", None)
    if not before:
        return
    if before["is_active"] and not instance.is_active:
        sessions_end_for_user(user=instance, reason="disabled")
    elif before["admin_role"] != instance.admin_role:
        sessions_end_for_user(user=instance, reason="role_change")


@receiver(pre_save, sender=Membership, dispatch_uid="accounts.membership_before_save")
def remember_membership_role(sender, instance: Membership, **kwargs) -> None:
    instance._role_before = None
    if instance.pk is not None:
        instance._role_before = Membership.objects.filter(pk=instance.pk).values_list("role", flat=True).first()


@receiver(post_save, sender=Membership, dispatch_uid="accounts.membership_after_save")
def end_sessions_on_demotion(sender, instance: Membership, created: bool, **kwargs) -> None:
    if department_role_loses_grants(getattr(instance, "_role_before", None), instance.role):
        sessions_end_for_user(user=instance.user, reason="demotion")


@receiver(post_delete, sender=Membership, dispatch_uid="accounts.membership_after_delete")
def end_sessions_on_membership_loss(sender, instance: Membership, **kwargs) -> None:
    user = User.objects.filter(pk=instance.user_id).first()
    if user is not None:  # None when the user itself is being deleted (cascade)
        sessions_end_for_user(user=user, reason="membership_removed")
