"""The auth service: users, groups, user tokens, introspection, OIDC login, registry tokens."""
