"""Runs `milvus-lite server` (started by scripts/infra) with clean shutdown on SIGTERM.

milvus-lite only shuts down gracefully (drain requests, close the database, release the data dir
LOCK) on KeyboardInterrupt. A daemon started from a non-interactive shell inherits SIGINT as
ignored, and the default SIGTERM action kills Python without cleanup, so map both to
KeyboardInterrupt here.

    python milvus-server.py --data-dir DIR --host 127.0.0.1 --port 19530
"""
import signal
import sys


def _interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _interrupt)
signal.signal(signal.SIGINT, _interrupt)

from milvus_lite.cmdline import main  # noqa: E402

sys.exit(main(["server", *sys.argv[1:]]))
