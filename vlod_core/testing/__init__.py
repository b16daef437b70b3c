"""Tiny random pairs of real VLM families in their stock Hub layout, for tests and benchmarks: the same code
path as a downloaded checkpoint (Auto classes, the family's own processor files), built in seconds offline.
Nothing in the product imports this package."""
