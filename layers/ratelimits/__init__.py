"""Rate limits counted in PostgreSQL, so every worker and process shares them."""
