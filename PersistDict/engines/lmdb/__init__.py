"""The LMDB engine: one LMDB environment per store directory, shared by the threads and processes of a host."""

DEFAULT_MAP_SIZE = 1 << 30  # virtual address space only: the file grows as needed
