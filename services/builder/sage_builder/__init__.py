"""The builder: from a submitted app to a multi-architecture image in the registry."""
