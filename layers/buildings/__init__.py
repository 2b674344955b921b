"""The buildings layer."""
