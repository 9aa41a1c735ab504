"""Forked helper processes end when the process that forked them is gone.

The import's parser and writer block waiting for work; if the importer is
killed (``kill -9``) nobody would ever send it, and they would live on.
"""

from __future__ import annotations

import os
import threading
import time


def end_with_parent(parent: int, *, interval: float = 1.0) -> None:
    """Start a watcher thread that ends this process once ``parent`` is no longer its parent.

    Ending mid-transaction is safe: SQLite rolls back what was not committed.
    """
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(0)

    threading.Thread(target=watch, name="bonychat-parent-watch", daemon=True).start()
