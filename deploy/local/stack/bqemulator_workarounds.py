"""Two local-stack workarounds for bugs of bqemulator 1.4.0, installed into its venv only.

1. Its gRPC server runs the synchronous AppendRows handler in grpc.aio's default thread pool,
   min(32, cores + 4) threads, and every open AppendRows connection keeps a thread: with 6 held
   (2 cores), the next append waits forever without an error. bq-writer keeps a connection per
   (partition, table), as BigQuery expects. Here the pool gets APPEND_THREADS threads.

2. Its one DuckDB connection is shared between the REST thread and the gRPC threads, and a REST
   job can deadlock the whole emulator against an append: the REST thread holds the GIL and
   waits for DuckDB's client-context lock, while the gRPC thread holds that lock inside
   ``INSERT ... SELECT FROM <registered Arrow table>`` and waits for the GIL (seen with py-spy and
   gdb, sql/README.md). Nothing is answered again until a restart. Here each thread gets its own
   cursor of the connection (its own client context and result), and every call into DuckDB
   takes one Python lock first; waiting on a Python lock releases the GIL, so the thread inside
   DuckDB can always finish.

deploy/local/stack/bqemulator-fetch.sh installs this file with a .pth hook; the Go code under
test is unchanged.
"""

import concurrent.futures
import threading

import duckdb
import grpc.aio

APPEND_THREADS = 256

_LOCK = threading.RLock()
_RAW_CONNECT = duckdb.connect


class _Serialized:
    """A proxy that runs every method of the wrapped DuckDB object under _LOCK."""

    __slots__ = ("_target",)

    def __init__(self, target):
        object.__setattr__(self, "_target", target)

    def _resolve(self):
        return self._target

    def __getattr__(self, name):
        target = self._resolve()
        value = getattr(target, name)
        if not callable(value):
            return value

        def locked(*args, **kwargs):
            with _LOCK:
                result = value(*args, **kwargs)
                if result is target:
                    return self
                if isinstance(result, (duckdb.DuckDBPyConnection, duckdb.DuckDBPyRelation)):
                    return _Serialized(result)
                return result

        return locked

    def __setattr__(self, name, value):
        setattr(self._resolve(), name, value)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        with _LOCK:
            return self._resolve().__exit__(*exc)

    def __iter__(self):
        with _LOCK:
            return iter(list(self._resolve()))


class _PerThread(_Serialized):
    """The emulator's one connection, as one DuckDB cursor per thread: a thread's execute and
    the fetch of its result are never split by another thread's statement (on one shared handle
    a query answered while an append ran came back empty), and no two threads share a client
    context (the deadlock above)."""

    __slots__ = ("_local",)

    def __init__(self, raw):
        super().__init__(raw)
        object.__setattr__(self, "_local", threading.local())

    def _resolve(self):
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            with _LOCK:
                cur = self._target.cursor()
            self._local.cursor = cur
        return cur

    def close(self):
        with _LOCK:
            return self._target.close()

    def __exit__(self, *exc):
        # "with connection:" ends the connection itself, not this thread's cursor.
        with _LOCK:
            return self._target.__exit__(*exc)


def _connect(*args, **kwargs):
    with _LOCK:
        return _PerThread(_RAW_CONNECT(*args, **kwargs))


_RAW_AIO_SERVER = grpc.aio.server


def _aio_server(*args, **kwargs):
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=APPEND_THREADS, thread_name_prefix="bqemu-grpc")
    if args:  # migration_thread_pool is the first positional parameter
        if args[0] is None:
            args = (pool,) + args[1:]
    elif kwargs.get("migration_thread_pool") is None:
        kwargs["migration_thread_pool"] = pool
    return _RAW_AIO_SERVER(*args, **kwargs)


if not getattr(grpc.aio, "_ecomstream_pool", False):
    grpc.aio.server = _aio_server
    grpc.aio._ecomstream_pool = True

if not getattr(duckdb, "_ecomstream_serialized", False):
    duckdb.connect = _connect
    duckdb._ecomstream_serialized = True
