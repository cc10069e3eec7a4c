"""The front cache (cache.py) and the rule that keeps it coherent with the engine (coherence.py)."""
