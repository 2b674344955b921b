"""The grids layer."""
