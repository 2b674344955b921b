"""Generic state machines: one action table per entity, one runner for every action."""
