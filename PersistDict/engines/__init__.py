"""Storage engines behind the mapping: the protocol (base) and its implementations."""
