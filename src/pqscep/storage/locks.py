"""`SqliteWriteLock`: one SQLite writer at a time, across the threads of a process and the
processes of a server.

SQLite itself allows one writer; a second one that finds the database locked is handled by
its busy handler, which sleeps in growing steps (1, 2, 5, 10 ... 100 ms) and retries. Under
load that turned a ~0.5 ms commit into waits of several milliseconds and a p99 latency of
hundreds (`pqscep serve --workers 3`, benchmarks/replay.sh). Here writers instead queue on a
thread lock and then on an flock(2) of a file next to the database, and the kernel wakes the
next one as soon as the previous one unlocks. Written by hand: no maintained library offers
this; the standard library's fcntl.flock does the locking.
"""

from __future__ import annotations

import os
import threading

try:
    import fcntl
except ImportError:  # pragma: no cover - not a POSIX system: threads only, SQLite's busy handler between processes
    fcntl = None  # type: ignore[assignment]


class SqliteWriteLock:
    """Context manager around every write transaction on one SQLite database file."""

    def __init__(self, database_path: str):
        self._threads = threading.Lock()
        # -writelock sits beside SQLite's own -wal and -shm files; 0600 like the database.
        self._fd = os.open(f"{database_path}-writelock", os.O_RDWR | os.O_CREAT, 0o600) if fcntl else None

    def __enter__(self) -> SqliteWriteLock:
        self._threads.acquire()
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)  # releases the GIL while it waits
            except BaseException:
                self._threads.release()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
