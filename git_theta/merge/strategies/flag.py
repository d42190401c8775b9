"""Flag: a yes/no strategy argument that reads "false" as false (bool("false") is True)."""

from __future__ import annotations

from typing import Self

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class Flag(int):
    """True or false from a TOML boolean, 0/1, or "true"/"false"/"yes"/"no"/"on"/"off" (any case)."""

    display_name = "bool"

    def __new__(cls, value: object) -> Self:
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            return super().__new__(cls, int(value))
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return super().__new__(cls, int(text in _TRUE))
        raise ValueError(f"{value!r} is not true or false")

    def __repr__(self) -> str:
        return "true" if self else "false"

    __str__ = __repr__
