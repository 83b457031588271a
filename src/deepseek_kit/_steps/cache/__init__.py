"""Response cache: the step, its key, its backends and the replay of stored streams."""
