"""Shared core: the config and its schema, provenance, rule-script plumbing."""
