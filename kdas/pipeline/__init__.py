"""`kdas pipeline`: every stage in order, each in its run folder, skipped when up to date."""
