"""Who else can write a database: pickle and dill run code when they load, so whoever can write
the directory or its data file runs code in every process that reads the store.

PersistDict warns (:class:`InsecureDatabaseWarning`) and goes on: it does not refuse, because a
shared group directory can be deliberate, and a warning can be silenced or turned into an error
with the standard ``warnings`` filters. The directory and each file checked is insecure when
group or others may write it, or when its owner is neither this process's effective user nor
root: another user could replace its content. Root gets no exemption as a reader: a store owned
by another user warns under root too (that user could make root run code).
"""

from __future__ import annotations

import os
import stat
import sys
import warnings

from ...exceptions import InsecureDatabaseWarning

# the package's directory (this module is in engines/lmdb/): its frames are not the caller's
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep


def warn_if_others_can_write(directory: str, files: tuple[str, ...]) -> None:
    """Warn once per insecure path among ``directory`` and its existing ``files``."""
    euid = os.geteuid()
    for path in (directory, *(os.path.join(directory, name) for name in files)):
        try:
            st = os.stat(path)
        except FileNotFoundError:  # a file the store has not created yet
            continue
        problems = []
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            who = " and ".join(name for bit, name in ((stat.S_IWGRP, "its group"), (stat.S_IWOTH, "all users"))
                               if st.st_mode & bit)
            problems.append(f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):#o})")
        if st.st_uid not in (euid, 0):
            problems.append(f"is owned by uid {st.st_uid}, neither this process's user (uid {euid}) nor root")
        if problems:
            warnings.warn(
                f"database path {path!r} {' and '.join(problems)}: whoever can write it can run code in every "
                "process that reads the store with pickle or dill (chmod go-w / chown it, or use json_codec, "
                "signed(...) or encrypted(...))",
                InsecureDatabaseWarning, stacklevel=_callers_level(),
            )


def _callers_level() -> int:
    """The stacklevel of the first frame outside PersistDict (and beartype's wrappers)."""
    frame, level = sys._getframe(1), 1
    while frame is not None:
        filename = frame.f_code.co_filename
        if not (filename.startswith(_PACKAGE_DIR) or filename.startswith("<@beartype")):
            return level
        frame, level = frame.f_back, level + 1
    return 1
