"""Process-wide tuning for the long-running processes (server and engine workers)."""
import gc


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
