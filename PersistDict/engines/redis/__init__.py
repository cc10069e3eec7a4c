"""The Redis engine: one namespace of a Redis server, shared by the processes of many hosts
(``PersistDict("redis://host:6379/0", namespace=...)``; needs the ``redis`` extra)."""

SCHEMES = ("redis://", "rediss://", "unix://")
