"""A Python client for the effdet-service HTTP API, and the `effdet-client` command built on it."""
