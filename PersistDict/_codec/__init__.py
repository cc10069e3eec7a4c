"""Codecs: how keys and values become bytes (and the record they are stored in)."""
