"""Device profiles and the memory planner (standard library only)."""
