"""The volunteers layer."""
