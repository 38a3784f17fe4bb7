"""LDAP / Active Directory configuration from the environment (read by config/settings.py).

Imported by the settings module before Django's apps are ready, so nothing here touches models.
``ldap_settings_from_env()`` returns the ``AUTH_LDAP_*`` settings of django-auth-ldap plus
``LDAP_ENABLED`` and ``LDAP_GROUP_MAPPINGS``; LDAP is off when ``LDAP_SERVER_URI`` is unset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from accounts.roles import MembershipRole
from config.env import env_bool, env_choice, env_int, env_secret, env_str

GROUP_TYPES = ("groupofnames", "nested_groupofnames", "active_directory", "nested_active_directory")
_GROUP_FILTERS = {
    "groupofnames": "(objectClass=groupOfNames)",
    "nested_groupofnames": "(objectClass=groupOfNames)",
    "active_directory": "(objectClass=group)",
    "nested_active_directory": "(objectClass=group)",
}
PLAIN_LDAP_REFUSED = (
    "LDAP_SERVER_URI is plain ldap:// without LDAP_START_TLS: directory passwords would cross the "
    "network in clear text (IA-3). Use ldaps:// or LDAP_START_TLS=true, or LDAP_REQUIRE_TLS=false "
    "outside production."
)


def _group_type(name: str):
    from django_auth_ldap import config

    return {
        "groupofnames": config.GroupOfNamesType,
        "nested_groupofnames": config.NestedGroupOfNamesType,
        "active_directory": config.ActiveDirectoryGroupType,
        "nested_active_directory": config.NestedActiveDirectoryGroupType,
    }[name]()


def _group_mappings(path_value: str | None) -> list[dict[str, str]]:
    """``LDAP_GROUP_MAPPINGS_FILE``: a JSON list of {"group": DN, "department": slug, "role": ...}."""
    if not path_value:
        return []
    try:
        data = json.loads(Path(path_value).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ImproperlyConfigured(f"LDAP_GROUP_MAPPINGS_FILE={path_value!r} cannot be read as JSON: {exc}") from None
    if not isinstance(data, list):
        raise ImproperlyConfigured("LDAP_GROUP_MAPPINGS_FILE must hold a JSON list")
    mappings = []
    for index, item in enumerate(data):
        if not isinstance(item, dict) or not {"group", "department"} <= set(item):
            raise ImproperlyConfigured(f"LDAP_GROUP_MAPPINGS_FILE item {index} needs 'group' and 'department'")
        role = item.get("role", MembershipRole.MEMBER.value)
        if role not in MembershipRole.values:
            raise ImproperlyConfigured(f"LDAP_GROUP_MAPPINGS_FILE item {index}: role must be 'member' or 'admin'")
        mappings.append({"group": str(item["group"]), "department": str(item["department"]), "role": role})
    return mappings


def ldap_settings_from_env(*, is_production: bool) -> dict[str, Any]:
    uri = env_str("LDAP_SERVER_URI")
    settings: dict[str, Any] = {
        "LDAP_ENABLED": bool(uri),
        "LDAP_GROUP_MAPPINGS": _group_mappings(env_str("LDAP_GROUP_MAPPINGS_FILE")),
    }
    if not uri:
        return settings

    import ldap
    from django_auth_ldap.config import LDAPSearch

    start_tls = env_bool("LDAP_START_TLS", False)
    if env_bool("LDAP_REQUIRE_TLS", True if is_production else False):
        if not all(part.strip().lower().startswith("ldaps://") for part in uri.split()) and not start_tls:
            raise ImproperlyConfigured(PLAIN_LDAP_REFUSED)
    bind_dn = env_str("LDAP_BIND_DN")
    bind_password = env_secret("LDAP_BIND_PASSWORD")
    if not bind_dn or not bind_password:
        # Searching anonymously is refused by AD and leaks the directory elsewhere.
        raise ImproperlyConfigured("LDAP_SERVER_URI needs LDAP_BIND_DN and LDAP_BIND_PASSWORD (or _FILE)")
    user_base = env_str("LDAP_USER_SEARCH_BASE")
    group_base = env_str("LDAP_GROUP_SEARCH_BASE")
    if not user_base or not group_base:
        raise ImproperlyConfigured("LDAP_SERVER_URI needs LDAP_USER_SEARCH_BASE and LDAP_GROUP_SEARCH_BASE")
    group_type = env_choice("LDAP_GROUP_TYPE", "nested_groupofnames", GROUP_TYPES)
    user_filter = env_str("LDAP_USER_FILTER", "(uid=%(user)s)")
    if "%(user)s" not in user_filter:
        raise ImproperlyConfigured("LDAP_USER_FILTER must contain %(user)s")
    timeout = env_int("LDAP_TIMEOUT_SECONDS", 10, minimum=1, maximum=120)

    options: dict[int, Any] = {
        ldap.OPT_REFERRALS: 0,  # AD answers with referrals that python-ldap would chase unauthenticated
        ldap.OPT_NETWORK_TIMEOUT: timeout,
        ldap.OPT_TIMEOUT: timeout,
        ldap.OPT_X_TLS_REQUIRE_CERT: ldap.OPT_X_TLS_DEMAND,
    }
    ca_file = env_str("LDAP_CA_FILE")
    if ca_file:
        if not Path(ca_file).is_file():
            raise ImproperlyConfigured(f"LDAP_CA_FILE={ca_file!r} is not a readable file")
        options[ldap.OPT_X_TLS_CACERTFILE] = ca_file
    # Must come last: applies the TLS options above to this connection's own TLS context.
    options[ldap.OPT_X_TLS_NEWCTX] = 0

    settings.update(
        {
            "AUTH_LDAP_SERVER_URI": uri,
            "AUTH_LDAP_BIND_DN": bind_dn,
            "AUTH_LDAP_BIND_PASSWORD": bind_password,
            "AUTH_LDAP_START_TLS": start_tls,
            "AUTH_LDAP_CONNECTION_OPTIONS": options,
            "AUTH_LDAP_USER_SEARCH": LDAPSearch(user_base, ldap.SCOPE_SUBTREE, user_filter),
            "AUTH_LDAP_GROUP_SEARCH": LDAPSearch(
                group_base, ldap.SCOPE_SUBTREE, env_str("LDAP_GROUP_FILTER", _GROUP_FILTERS[group_type])
            ),
            "AUTH_LDAP_GROUP_TYPE": _group_type(group_type),
            # PI-1: only what the business needs.
            "AUTH_LDAP_USER_ATTR_MAP": {
                "first_name": env_str("LDAP_ATTR_FIRST_NAME", "givenName"),
                "last_name": env_str("LDAP_ATTR_LAST_NAME", "sn"),
                "email": env_str("LDAP_ATTR_EMAIL", "mail"),
                "employee_number": env_str("LDAP_ATTR_EMPLOYEE_NUMBER", "employeeNumber"),
            },
            "AUTH_LDAP_ALWAYS_UPDATE_USER": True,
            "AUTH_LDAP_PERMIT_EMPTY_PASSWORD": False,  # never an anonymous ("unauthenticated") bind
            "AUTH_LDAP_FIND_GROUP_PERMS": False,
            "AUTH_LDAP_MIRROR_GROUPS": False,
            "AUTH_LDAP_CACHE_TIMEOUT": 0,  # group changes take effect at the next login
        }
    )
    return settings
