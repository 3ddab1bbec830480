"""Decoding backends behind `prvr.video.decoding`: decord, PyAV and folders of frame images.

Each backend module offers `probe(path) -> VideoProbe` (frame start times, nominal fps, native
size) and `read(path, indices, height, width) -> (T, h, w, 3) uint8` (-1: native size); the
choice of frames and the centre crop are done once, in `prvr.video.decoding`.
"""
