"""The directory (LDAP/AD): its settings, the authentication backends, and the mapping of
directory groups to departments and roles."""
