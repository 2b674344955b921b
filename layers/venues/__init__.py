"""The venues layer."""
