"""LMDB's data file read with plain ``pread`` (never through a map): is a file shorter than its
last page number says healthy, or truncated?

LMDB may leave the file shorter than ``(mm_last_pg + 1) * psize``: a page allocated and freed in
one transaction ("loose") is never written, but goes to the free list. LMDB's own rule (mdb.c,
``MDB_meta.mm_last_pg``): "the file may be shorter if the freeDB lists the final pages". So a file
is whole when every page from its end up to ``mm_last_pg`` is listed in the free-page tree
(``FREE_DBI``) of the current meta page; a page past the end that is not free is in use, and
reading it through LMDB's map would kill the process with SIGBUS. Here a short read is an error.

Layout relied on (liblmdb 0.9.x, 64-bit little-endian build, offsets in bytes; anything else is
refused as unparseable):

- page header ``MDB_page`` (16): ``mp_pgno`` u64 @0, ``mp_flags`` u16 @10, then ``mp_lower`` u16
  @12 and ``mp_upper`` u16 @14, or ``mp_pages`` u32 @12 for an overflow page; node offsets
  (u16, from the page start) from @16, ``(mp_lower - 16) / 2`` of them.
  Flags: P_BRANCH 0x01, P_LEAF 0x02, P_OVERFLOW 0x04, P_META 0x08, P_LEAF2 0x20, P_SUBP 0x40.
- meta pages 0 and 1 (page 1 at ``psize``), ``MDB_meta`` after the page header: ``mm_magic`` u32
  @0 (0xBEEFC0DE), ``mm_version`` u32 @4 (1), ``mm_dbs[0]`` (FREE_DBI) @24 and ``mm_dbs[1]`` @72
  as ``MDB_db`` (48 bytes: ``md_pad`` u32 @0 = page size in ``mm_dbs[0]``, ``md_depth`` u16 @6,
  ``md_root`` u64 @40, all-ones when the tree is empty), ``mm_last_pg`` u64 @120, ``mm_txnid``
  u64 @128. The current meta is the one with the larger txnid.
- node ``MDB_node`` (8 + key + data): ``mn_lo`` u16 @0, ``mn_hi`` u16 @2, ``mn_flags`` u16 @4,
  ``mn_ksize`` u16 @6, key from @8. In a branch node the child page is
  ``mn_lo | mn_hi << 16 | mn_flags << 32``; in a leaf node the data size is ``mn_lo | mn_hi << 16``
  and the data follows the key, or with F_BIGDATA (0x01) is a u64 page number of an overflow
  page whose data starts after its header.
- ``FREE_DBI`` records: key = the u64 txnid that freed the pages, data = an ID list: a u64
  count, then that many u64 page numbers (a record may be longer than its count).
"""

from __future__ import annotations

import errno
import os
import struct
import sys
from collections.abc import Iterator

from ...exceptions import CorruptedDatabaseError

_PAGE_HEADER = struct.Struct("<QHHHH")  # mp_pgno, mp_pad, mp_flags, mp_lower, mp_upper
_PAGE_HEADER_SIZE = 16
_OVERFLOW_PAGES = struct.Struct("<I")  # mp_pages, @12 of an overflow page
_META = struct.Struct("<II")  # mm_magic, mm_version
_META_FREE_DB = 24  # mm_dbs[FREE_DBI] inside MDB_meta
_DB = struct.Struct("<IHHQQQQQ")  # md_pad, md_flags, md_depth, branch, leaf, overflow, entries, md_root
_META_LAST_PAGE = struct.Struct("<QQ")  # mm_last_pg, mm_txnid, @120
_META_LAST_PAGE_OFFSET = 120
_NODE = struct.Struct("<HHHH")  # mn_lo, mn_hi, mn_flags, mn_ksize
_NODE_SIZE = 8
_U16 = struct.Struct("<H")
_U64 = struct.Struct("<Q")

_MAGIC = 0xBEEFC0DE
_DATA_VERSION = 1
P_BRANCH, P_LEAF, P_OVERFLOW, P_META = 0x01, 0x02, 0x04, 0x08
F_BIGDATA = 0x01
_NO_PAGE = 2**64 - 1  # P_INVALID: an empty tree's root
_MAX_DEPTH = 64  # a B-tree of 2**64 pages is far shallower


class _Unreadable(Exception):
    """The file does not hold what the layout says: truncated or damaged."""


def check_final_pages_are_free(data_file: str, page_size: int, description: str) -> None:
    """Raise CorruptedDatabaseError unless every page between the end of ``data_file`` and its
    current meta page's last page is listed as free (so LMDB never reads it).

    The caller holds a read transaction, which keeps the tree read here from being reused."""
    try:
        fd = os.open(data_file, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise CorruptedDatabaseError(errno.EIO, f"{description}: cannot read its data file ({exc.strerror})") from None
    try:
        _check(_File(fd, page_size), description)
    except _Unreadable as exc:
        raise CorruptedDatabaseError(errno.EIO, f"{description}: {exc} (truncated or damaged?)") from None
    finally:
        os.close(fd)


def _check(file: _File, description: str) -> None:
    if sys.maxsize <= 2**32 or sys.byteorder != "little":
        raise _Unreadable("its page layout can only be checked on a 64-bit little-endian build")
    last_page, free_root, free_depth = file.current_meta()
    size = os.fstat(file.fd).st_size  # after the meta: a page it counts was written before it
    first_missing = size // file.page_size  # a partial page is missing too
    if first_missing > last_page:
        return
    missing = last_page + 1 - first_missing
    free = file.free_pages_from(free_root, free_depth, last_page, first_missing)
    if len(free) != missing:
        in_use = next(pgno for pgno in range(first_missing, last_page + 1) if pgno not in free)
        raise CorruptedDatabaseError(
            errno.EIO,
            f"{description}: data file has {size} bytes, needs {(last_page + 1) * file.page_size}: "
            f"page {in_use} is in use and missing (truncated?)",
        )


class _File:
    def __init__(self, fd: int, page_size: int) -> None:
        self.fd = fd
        self.page_size = page_size

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset``, or _Unreadable if the file ends before them."""
        size = os.fstat(self.fd).st_size  # first: a damaged length must not allocate gigabytes
        data = os.pread(self.fd, length, offset) if offset + length <= size else b""
        if len(data) != length:
            raise _Unreadable(f"its data file ends at {size} bytes, before byte {offset + length} that it needs")
        return data

    def current_meta(self) -> tuple[int, int, int]:
        """(mm_last_pg, free tree root, free tree depth) of the meta page with the larger txnid."""
        first, second = self._meta(0), self._meta(1)
        txnid, last_page, root, depth = second if second[0] > first[0] else first  # as mdb_env_pick_meta
        if root != _NO_PAGE and not 2 <= root <= last_page:
            raise _Unreadable(f"its free-page tree starts at page {root}, outside pages 2..{last_page}")
        return last_page, root, depth

    def _meta(self, pgno: int) -> tuple[int, int, int, int]:
        page = self.read(pgno * self.page_size, _PAGE_HEADER_SIZE + _META_LAST_PAGE_OFFSET + _META_LAST_PAGE.size)
        flags = _PAGE_HEADER.unpack_from(page)[2]
        magic, version = _META.unpack_from(page, _PAGE_HEADER_SIZE)
        if not flags & P_META or magic != _MAGIC or version != _DATA_VERSION:
            raise _Unreadable(f"page {pgno} is not an LMDB meta page of version {_DATA_VERSION}")
        page_size, _, depth, *_, root = _DB.unpack_from(page, _PAGE_HEADER_SIZE + _META_FREE_DB)
        if page_size != self.page_size:
            raise _Unreadable(f"meta page {pgno} records page size {page_size}, not {self.page_size}")
        last_page, txnid = _META_LAST_PAGE.unpack_from(page, _PAGE_HEADER_SIZE + _META_LAST_PAGE_OFFSET)
        return txnid, last_page, root, depth

    def free_pages_from(self, root: int, depth: int, last_page: int, first: int) -> set[int]:
        """The pages from ``first`` to ``last_page`` that the free-page tree lists."""
        free: set[int] = set()
        if root == _NO_PAGE:
            return free
        if not 1 <= depth <= _MAX_DEPTH:
            raise _Unreadable(f"its free-page tree claims a depth of {depth}")
        stack = [(root, 1)]
        seen: set[int] = set()
        while stack:
            pgno, level = stack.pop()
            if pgno in seen or not 2 <= pgno <= last_page:
                raise _Unreadable(f"its free-page tree links page {pgno} wrongly")
            seen.add(pgno)
            page = self.read(pgno * self.page_size, self.page_size)
            if level < depth:
                stack.extend((child, level + 1) for child in self._children(page, pgno))
                continue
            for ids in self._records(page, pgno, last_page):
                free.update(free_pgno for free_pgno in _id_list(ids, pgno) if first <= free_pgno <= last_page)
        return free

    def _nodes(self, page: bytes, pgno: int, flag: int) -> Iterator[tuple[int, int, int, int]]:
        """(offset, mn_lo | mn_hi << 16, mn_flags, mn_ksize) of each node of a page whose flags
        must include ``flag`` (P_BRANCH or P_LEAF)."""
        stored_pgno, _, flags, lower, upper = _PAGE_HEADER.unpack_from(page)
        if stored_pgno != pgno or flags & (P_BRANCH | P_LEAF) != flag:
            kind = "branch" if flag == P_BRANCH else "leaf"
            raise _Unreadable(f"page {pgno} is not the {kind} page its free-page tree links to")
        if not _PAGE_HEADER_SIZE <= lower <= upper <= self.page_size or lower % 2:
            raise _Unreadable(f"page {pgno} has a damaged header")
        for index in range((lower - _PAGE_HEADER_SIZE) // 2):
            offset = _U16.unpack_from(page, _PAGE_HEADER_SIZE + 2 * index)[0]
            if not upper <= offset <= self.page_size - _NODE_SIZE:
                raise _Unreadable(f"page {pgno} has a node outside the page")
            low, high, node_flags, key_size = _NODE.unpack_from(page, offset)
            yield offset, low | high << 16, node_flags, key_size

    def _children(self, page: bytes, pgno: int) -> Iterator[int]:
        for _, low_bits, high_bits, _ in self._nodes(page, pgno, P_BRANCH):
            yield low_bits | high_bits << 32

    def _records(self, page: bytes, pgno: int, last_page: int) -> Iterator[bytes]:
        """The data of each record of a leaf page (read from its overflow pages if it has them)."""
        for offset, size, node_flags, key_size in self._nodes(page, pgno, P_LEAF):
            if key_size != 8:  # a txnid
                raise _Unreadable(f"page {pgno} of its free-page tree holds a key of {key_size} bytes")
            start = offset + _NODE_SIZE + key_size
            if start + (8 if node_flags & F_BIGDATA else size) > self.page_size:
                raise _Unreadable(f"page {pgno} has a node outside the page")
            if node_flags & F_BIGDATA:
                yield self._overflow(_U64.unpack_from(page, start)[0], size, last_page)
            else:
                yield page[start:start + size]

    def _overflow(self, pgno: int, size: int, last_page: int) -> bytes:
        if not 2 <= pgno <= last_page:
            raise _Unreadable(f"its free-page tree links overflow page {pgno} wrongly")
        header = self.read(pgno * self.page_size, _PAGE_HEADER_SIZE)
        stored_pgno, _, flags, _, _ = _PAGE_HEADER.unpack_from(header)
        pages = _OVERFLOW_PAGES.unpack_from(header, 12)[0]
        if (stored_pgno != pgno or not flags & P_OVERFLOW or pgno + pages - 1 > last_page
                or _PAGE_HEADER_SIZE + size > pages * self.page_size):
            raise _Unreadable(f"overflow page {pgno} of its free-page tree is damaged")
        return self.read(pgno * self.page_size + _PAGE_HEADER_SIZE, size)


def _id_list(data: bytes, pgno: int) -> memoryview:
    """The page numbers of a free-page record: a u64 count, then the numbers."""
    if len(data) < 8 or len(data) % 8:
        raise _Unreadable(f"page {pgno} of its free-page tree holds a record of {len(data)} bytes")
    count = _U64.unpack_from(data)[0]
    if (count + 1) * 8 > len(data):
        raise _Unreadable(f"page {pgno} of its free-page tree holds a record that lists more pages than it has")
    return memoryview(data).cast("Q")[1:count + 1]
