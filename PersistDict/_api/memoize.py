"""``get_or_set`` and ``@memoize`` (sync and async): compute a missing value once across threads, tasks and processes.

Concurrent callers of a missing key wait on the entry's lock (``Locks._key_lock``, on the engine's
named mutex) while one of them computes; they then read what it stored. If the computation raises,
nothing is stored, the error reaches that caller and the next waiter computes. If its process dies,
a waiter takes over when the lock's ttl runs out."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, cast

from .options import ttl_seconds
from .state import MISSING, K, V, StoreState, typechecked

if TYPE_CHECKING:
    from .locks import StoreLock

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

_ABSENT: Any = object()  # pop's default (MISSING means "no default" there)
LOCK_TTL = 60.0  # how long a computation may hold its key's lock before a waiter takes over


class Memoized(Protocol[P, R_co]):
    """What ``@d.memoize()`` makes of a function: the function, with its cache's key and invalidation."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> tuple[Any, ...]: ...
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool: ...
    def __get__(self, instance: Any, owner: Any = None) -> Any: ...  # a method binds like a function


def _canonical(value: Any) -> Any:
    """``value`` as a key the canonical key codec takes: lists as tuples, dicts and sets as frozensets."""
    if isinstance(value, (list, tuple)):
        return tuple(_canonical(item) for item in value)
    if isinstance(value, dict):
        return frozenset((_canonical(k), _canonical(v)) for k, v in value.items())
    if isinstance(value, set):
        return frozenset(_canonical(item) for item in value)
    return value


def _typed(value: Any) -> Any:
    return (type(value).__qualname__, value)


class Memoize(StoreState, Generic[K, V]):
    """``get_or_set`` and ``memoize``."""

    if TYPE_CHECKING:
        _keys: Any

        def _key_lock(self, lookup: bytes, ttl: float) -> StoreLock: ...

    def get_or_set(self, key: K, factory: Callable[[], V], *, ttl: int | float | None = None,
                   lock: bool = True, lock_ttl: int | float = LOCK_TTL) -> V:
        """``d[key]``, or, if it is missing, ``factory()``, stored (with ``ttl``) and returned. With
        ``lock`` (the default) concurrent callers in every thread and process wait for one call of
        ``factory`` instead of making their own; ``lock_ttl``: how long that call may take before
        a waiter decides its caller died and computes instead."""
        ttl_seconds(ttl)  # checked before anything runs
        store: Any = self  # its reads and writes (reads.py, writes.py)
        value = store.get(key, MISSING)
        if value is not MISSING:
            return value  # type: ignore[no-any-return]
        if not lock:
            value = factory()
            store.set(key, value, ttl=ttl)
            return value
        with self._key_lock(self._keys.encode(key)[0], float(ttl_seconds(lock_ttl) or LOCK_TTL)):
            value = store.get(key, MISSING)  # stored by the holder we waited for
            if value is MISSING:
                value = factory()
                store.set(key, value, ttl=ttl)
        return value  # type: ignore[no-any-return]

    async def aget_or_set(self, key: K, factory: Callable[[], Any], *, ttl: int | float | None = None,
                          lock: bool = True, lock_ttl: int | float = LOCK_TTL) -> V:
        """:meth:`get_or_set` for async code: ``factory`` may be sync or async (its result is
        awaited); waiting for another caller's computation, and the store's work, stay off the loop."""
        ttl_seconds(ttl)
        store: Any = self
        value = await store.aget(key, MISSING)
        if value is not MISSING:
            return value  # type: ignore[no-any-return]

        async def compute() -> Any:
            result = factory()
            if inspect.isawaitable(result):
                result = await result
            await store.aset(key, result, ttl=ttl)
            return result

        if not lock:
            return await compute()  # type: ignore[no-any-return]
        async with self._key_lock(self._keys.encode(key)[0], float(ttl_seconds(lock_ttl) or LOCK_TTL)):
            value = await store.aget(key, MISSING)  # stored by the holder we waited for
            if value is MISSING:
                value = await compute()
        return value  # type: ignore[no-any-return]

    @typechecked
    def memoize(self, *, ttl: int | float | None = None, name: str | None = None, typed: bool = False,
                ignore: Iterable[str] = (), lock: bool = True) -> Callable[[Callable[P, R]], Memoized[P, R]]:
        """Cache a function's results in the store: ``@d.memoize()``. The key is the function's
        qualified name (or ``name``) and its arguments bound to its parameters (keyword order does
        not matter, defaults are filled in; ``ignore`` names parameters left out, ``typed`` tells
        ``1`` from ``1.0``); a method's ``self``/``cls`` is left out. Exceptions are not cached.
        ``lock``: stampede protection as in :meth:`get_or_set`. The function gets
        ``.cache_key(*args, **kwargs)`` and ``.invalidate(*args, **kwargs)`` (True if it removed one)."""
        ttl_seconds(ttl)
        ignored = frozenset(ignore)
        store: Any = self

        def decorate(func: Callable[P, R]) -> Memoized[P, R]:
            signature = inspect.signature(func)
            parameters = list(signature.parameters.values())
            unknown = ignored - {p.name for p in parameters}
            if unknown:
                raise ValueError(f"memoize(ignore=...) names no parameter of {func.__qualname__}: {sorted(unknown)}")
            skip = set(ignored)
            if parameters and parameters[0].name in ("self", "cls"):
                skip.add(parameters[0].name)
            label = name or f"{func.__module__}.{func.__qualname__}"

            def cache_key(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                parts = []
                for param, value in bound.arguments.items():  # in the signature's order
                    if param in skip:
                        continue
                    kind = signature.parameters[param].kind
                    if kind is inspect.Parameter.VAR_KEYWORD:
                        value = {k: _typed(v) if typed else v for k, v in value.items()}
                    elif kind is inspect.Parameter.VAR_POSITIONAL:
                        value = tuple(_typed(v) if typed else v for v in value)
                    elif typed:
                        value = _typed(value)
                    parts.append((param, _canonical(value)))
                return ("memoize", label, tuple(parts))

            if inspect.iscoroutinefunction(func):
                @functools.wraps(func)
                async def amemoized(*args: Any, **kwargs: Any) -> Any:
                    return await store.aget_or_set(cache_key(*args, **kwargs), lambda: func(*args, **kwargs),
                                                   ttl=ttl, lock=lock)
                memoized: Any = amemoized
            else:
                @functools.wraps(func)
                def memoized(*args: P.args, **kwargs: P.kwargs) -> R:
                    key: Any = cache_key(*args, **kwargs)
                    return cast(R, store.get_or_set(key, lambda: func(*args, **kwargs), ttl=ttl, lock=lock))

            def invalidate(*args: Any, **kwargs: Any) -> bool:
                return store.pop(cache_key(*args, **kwargs), _ABSENT) is not _ABSENT

            memoized.cache_key = cache_key  # type: ignore[attr-defined]
            memoized.invalidate = invalidate  # type: ignore[attr-defined]
            return cast("Memoized[P, R]", memoized)

        return decorate
