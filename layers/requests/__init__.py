"""The requests layer."""
