"""Model-based test: random operation sequences on PersistDict behave exactly like a dict on every
engine, including across close/reopen (engines that persist) and with keys hashed into tiny colliding slots."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from ._engines import Stores

scalar_keys = st.one_of(
    st.text(max_size=6),
    st.text(min_size=40, max_size=60),  # longer than the key_size_limit below: hashed
    st.binary(max_size=4),
    st.integers(-3, 3),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, min_value=-2, max_value=2),
)
keys = st.one_of(scalar_keys, st.tuples(scalar_keys, scalar_keys), st.frozensets(scalar_keys, max_size=3))
values = st.one_of(st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=3), st.none())


class DictModel(RuleBasedStateMachine):
    """PersistDict against a plain dict."""

    def __init__(self, stores: Stores) -> None:
        super().__init__()
        self.stores = stores
        self.options: dict[str, Any] = dict(key_size_limit=24)
        self.store = stores.open(**self.options)
        self.model: dict[Any, Any] = {}

    @rule(key=keys, value=values)
    def set(self, key: Any, value: Any) -> None:
        self.store[key] = value
        self.model[key] = value

    @rule(key=keys)
    def get(self, key: Any) -> None:
        assert self.store.get(key, "<missing>") == self.model.get(key, "<missing>")

    @rule(key=keys)
    def contains(self, key: Any) -> None:
        assert (key in self.store) == (key in self.model)

    @rule(key=keys)
    def delete(self, key: Any) -> None:
        expected = key in self.model
        try:
            del self.store[key]
            deleted = True
        except KeyError:
            deleted = False
        assert deleted == expected
        self.model.pop(key, None)

    @rule(key=keys)
    def pop(self, key: Any) -> None:
        assert self.store.pop(key, "<missing>") == self.model.pop(key, "<missing>")

    @rule(key=keys, value=values)
    def setdefault(self, key: Any, value: Any) -> None:
        assert self.store.setdefault(key, value) == self.model.setdefault(key, value)

    @rule(items=st.dictionaries(keys, values, max_size=5))
    def update(self, items: dict[Any, Any]) -> None:
        self.store.update(items)
        self.model.update(items)

    @precondition(lambda self: self.model)
    @rule()
    def popitem(self) -> None:
        assert self.store.popitem() == self.model.popitem()

    @precondition(lambda self: not self.stores.encrypted)  # refused there (test_prefix.py)
    @rule(prefix=st.one_of(st.text(max_size=2), st.binary(max_size=2)))
    def keys_with_prefix(self, prefix: str | bytes) -> None:
        expected = sorted(k for k in self.model if type(k) is type(prefix) and k.startswith(prefix))  # type: ignore[arg-type]
        assert self.store.keys(prefix=prefix) == expected

    @rule()
    def clear(self) -> None:
        self.store.clear()
        self.model.clear()

    @precondition(lambda self: self.stores.persists)
    @rule()
    def reopen(self) -> None:
        self.store = self.stores.reopen(self.store, **self.options)

    @invariant()
    def same_contents_and_order(self) -> None:
        assert len(self.store) == len(self.model)
        items = list(self.store.items())
        assert items == list(self.model.items())
        # same key types too (1, 1.0 and True are equal but distinct objects)
        assert [type(k) for k, _ in items] == [type(k) for k in self.model]
        assert [type(k) for k in self.store] == [type(k) for k in self.model]

    def teardown(self) -> None:
        assert self.store.check().ok
        self.store.close()


def test_random_operations_behave_like_a_dict(stores: Stores) -> None:
    """Random sequences of every mapping operation leave the store equal to a dict, in the same order."""
    run_state_machine_as_test(lambda: DictModel(stores),
                              settings=settings(max_examples=80, stateful_step_count=30, deadline=None))
