"""Storage and domain layer: one package per map layer, services own transactions."""
