"""The circles layer."""
