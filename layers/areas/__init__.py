"""The areas layer."""
