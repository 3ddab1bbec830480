"""Where a benchmark's data comes from: annotation parsers (TVR, ActivityNet Captions, Charades-STA), the
per-split tables, downloads, archives, YouTube, and the import of released features (HDF5, BigFile)."""
