"""Videos to frames: decoding backends (decord, PyAV, frame folders), time-true frame sampling, id-to-file
matching, and the capture of what the C decoders print."""
