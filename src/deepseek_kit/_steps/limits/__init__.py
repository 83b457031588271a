"""Rate and concurrency limits: the vocabulary, the step, local and Redis backends."""
