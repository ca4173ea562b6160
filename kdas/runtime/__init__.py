"""The deployable retrieval runtime. Never imports torch: it ships to edge boxes alone."""
