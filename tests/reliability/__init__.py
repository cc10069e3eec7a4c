"""The reliability suite: the store attacked with real faults (see the README's "Reliability")."""
