"""Features at rest: the HDF5 feature stores in the authors' layout, the caption files that index a split,
the resampling to a fixed number of frame tokens, and the float16 cache with its read-only views."""
