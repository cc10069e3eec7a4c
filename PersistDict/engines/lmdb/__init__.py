"""The LMDB engine: one LMDB environment per store directory, shared by the threads and processes of a host."""
