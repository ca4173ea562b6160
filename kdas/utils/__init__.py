"""Small helpers shared across stages (atomic writes, typed configs)."""
