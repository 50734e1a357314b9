"""Process-wide tuning for the long-running processes (server and engine workers)."""
import gc
import sys

# Seconds a thread runs before another that waits for the interpreter lock may take it.
SERVER_SWITCH_INTERVAL = 0.001


def settle_heap() -> None:
    """Keep the garbage collector off what start-up built.

    A server process holds a million objects from start-up (Django, NumPy, PyTorch's modules and
    the task's model code) that live as long as it does. Python's full collections walk all of
    them: measured at 250-500 ms each, several times a minute under load, every request waiting.
    Frozen, they are never walked again, and a full collection costs what the live requests
    allocated. Collections are also made rarer: a request allocates thousands of objects, and the
    default of a young collection every 700 allocations spends more time collecting than freeing.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def tune_server() -> None:
    """A server process: many short requests on a thread pool, their writes queued one at a time
    (SQLite's one writer; ``fedplatform.sqlite``).

    A request holding the write lock gives up the interpreter at every SQLite call, and with the
    default 5 ms switch interval it waited up to that long to get it back, each time, while other
    threads ran: its transaction, and every writer queued behind it, grew manyfold. Measured with
    1,000 devices joining at 100 a second on one process: a registration's median wait for the
    write lock went from 54 ms to under 1 ms, its median answer from 366 to 9 ms. Shorter turns
    cost a little throughput and bound that wait. Then ``settle_heap``.
    """
    sys.setswitchinterval(SERVER_SWITCH_INTERVAL)
    settle_heap()
