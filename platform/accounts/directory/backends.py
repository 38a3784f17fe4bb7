"""Authentication backends: local accounts and the directory, never crossing over.

A directory entry must not sign in as a local account of the same name (the three administrators
are local break-glass accounts), and a local password must not open a directory account.
"""

from __future__ import annotations

import logging

import ldap
import ldap.filter
from django.contrib.auth.backends import ModelBackend
from django_auth_ldap.backend import LDAPBackend, _LDAPUser

from accounts.directory.group_mapping import MembershipChanges, memberships_apply
from accounts.models import AccountSource

logger = logging.getLogger(__name__)

LOCAL_ACCOUNT_NOT_DIRECTORY = "a local account of this name exists; the directory may not take it over"


class LocalAccountBackend(ModelBackend):
    """Django's password check, for local accounts only; permissions come from the role matrix."""

    def user_can_authenticate(self, user) -> bool:
        return super().user_can_authenticate(user) and user.source == AccountSource.LOCAL

    # The role matrix (User.has_perm) decides; the permission tables are not used.
    def get_all_permissions(self, user_obj, obj=None):
        return set()

    def has_perm(self, user_obj, perm, obj=None) -> bool:
        return False

    def has_module_perms(self, user_obj, app_label) -> bool:
        return False


class DirectoryBackend(LDAPBackend):
    """django-auth-ldap, plus: no local-account takeover, and group mapping at every login."""

    def get_or_build_user(self, username, ldap_user):
        user, built = super().get_or_build_user(username, ldap_user)
        if not built and user.source != AccountSource.DIRECTORY:
            raise ldap_user.AuthenticationFailed(LOCAL_ACCOUNT_NOT_DIRECTORY)
        user.source = AccountSource.DIRECTORY
        return user, built

    def authenticate_ldap_user(self, ldap_user, password):
        user = super().authenticate_ldap_user(ldap_user, password)
        if user is not None:
            user.directory_changes = memberships_apply(user=user, group_dns=ldap_user.group_dns)
        return user

    def sync_user(self, username: str) -> tuple[object | None, MembershipChanges | None]:
        """Refresh one user from the directory with the service account (``ldap_sync``).

        Returns (None, None) when the directory no longer has the user (or the user filter now
        excludes them, e.g. a disabled AD account). django-auth-ldap swallows search errors and
        answers "not found"; for a job that disables accounts that would be a disaster when the
        server is down, so the user search is repeated here with errors raised (``ldap.LDAPError``).
        """
        ldap_user = _LDAPUser(self, username=username)
        connection = ldap_user.connection  # bound with the service account; raises on failure
        search = self.settings.USER_SEARCH
        escaped = ldap.filter.escape_filter_chars(username)
        found = connection.search_s(search.base_dn, search.scope, search.filterstr % {"user": escaped}, ["1.1"])
        found = [entry for entry in found if entry[0]]  # drop referrals
        if len(found) != 1:
            return None, None
        group_search = self.settings.GROUP_SEARCH
        connection.search_s(group_search.base_dn, ldap.SCOPE_BASE, "(objectClass=*)", ["1.1"])
        user = ldap_user.populate_user()
        if user is None:
            raise ldap.SERVER_DOWN({"desc": f"the directory stopped answering while reading {username}"})
        return user, memberships_apply(user=user, group_dns=ldap_user.group_dns, acting_user="system")

    # Permissions come from the role matrix, not from directory groups.
    def get_all_permissions(self, user, obj=None):
        return set()

    def has_perm(self, user, perm, obj=None) -> bool:
        return False

    def has_module_perms(self, user, app_label) -> bool:
        return False
