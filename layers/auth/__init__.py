"""The auth layer."""
