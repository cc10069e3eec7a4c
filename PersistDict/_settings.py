"""The constructor's 0.2.x arguments, read back as read-only attributes.

Code written for the original PersistDict reads its settings back from the
instance (``d.background_timeout``, ``d.key_serializer``...). Each property
gives what 0.2.x gave under that name; none can be assigned, since changing a
setting of an open store would not take effect (AttributeError instead).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._codec.keys import KeyCodec


class SettingsAttributes:
    """Read-only attributes for the 0.2.x constructor arguments, from ``_settings``."""

    path: str
    _settings: dict[str, Any]
    _keys: KeyCodec

    @property
    def database_path(self) -> Path:
        """The database directory (absolute)."""
        return Path(self.path)

    @property
    def expiration_days(self) -> float:
        """Days without a read or write after which an entry is removed; 0: never."""
        return float(self._settings["expiration_days"])

    @property
    def key_serializer(self) -> Callable[[Any], str | bytes] | None:
        """The key codec's encoder as given; None: keys are str/bytes used as they are."""
        return self._settings["key_serializer"]  # type: ignore[no-any-return]

    @property
    def key_unserializer(self) -> Callable[[Any], Any] | None:
        """The key codec's decoder as given; None: keys are str/bytes used as they are."""
        return self._settings["key_unserializer"]  # type: ignore[no-any-return]

    @property
    def key_size_limit(self) -> int:
        """The effective limit: keys encoding to more bytes are stored under a hash (at most 511)."""
        return self._keys.key_size_limit

    @property
    def value_serializer(self) -> Callable[[Any], Any] | None:
        """The value codec's encoder as given; None: values are str/bytes stored as they are."""
        return self._settings["value_serializer"]  # type: ignore[no-any-return]

    @property
    def value_unserializer(self) -> Callable[[Any], Any] | None:
        """The value codec's decoder as given; None: values are str/bytes stored as they are."""
        return self._settings["value_unserializer"]  # type: ignore[no-any-return]

    @property
    def caching(self) -> bool:
        """Whether the in-memory front cache serves hot reads."""
        return bool(self._settings["caching"])

    @property
    def verbose(self) -> bool:
        """Whether this instance logs its work."""
        return bool(self._settings["verbose"])

    @property
    def background_thread(self) -> bool | str:
        """True (maintenance in a thread), False (at open, in the constructor) or "disabled"."""
        return self._settings["background_thread"]  # type: ignore[no-any-return]

    @property
    def background_timeout(self) -> int | float:
        """Seconds one maintenance pass may spend expiring entries, clamped to at least 5 as 0.2.x did."""
        return max(5, self._settings["background_timeout"])  # type: ignore[no-any-return]

    @property
    def name(self) -> str:
        """The name prefixing this instance's log lines (default: the directory's name)."""
        return self._settings["name"] or Path(self.path).name  # type: ignore[no-any-return]
