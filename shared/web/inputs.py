"""Request bodies: strict models whose text holds no control characters.

A NUL or another control character has no business in a name, an address or a note, and
PostgreSQL refuses NUL outright: left in, it would fail far from where it came in (in a
projection, parking the case). Refused at the door, it names the field.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError

__all__ = ["Input", "Instant", "PLAIN_TEXT"]

# C0 controls except tab, newline and carriage return; DEL; and the C1 controls
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
PLAIN_TEXT = r"^[^\x00-\x1f\x7f-\x9f]*$"  # for query parameters: no control characters


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        if _CONTROL.search(value):
            raise PydanticCustomError("control_character",
                                      "must not contain control characters")
    elif isinstance(value, (list, tuple)):
        for item in value:
            _clean(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _clean(key)
            _clean(item)
    return value


class Input(BaseModel):
    """Base of every request body: unknown fields refused, text trimmed and printable."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="after")
    @classmethod
    def _printable(cls, value: Any) -> Any:
        return _clean(value)


def _representable(value: datetime) -> datetime:
    """0001-01-01T00:00:00+00:01 parses, but lies before year 1 in UTC: PostgreSQL and
    Python cannot hold it as an instant."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("instant_range",
                                  "must lie between the years 1 and 9999 in UTC") from None
    return value


# An RFC 3339 instant with its offset, which every store can hold.
Instant = Annotated[AwareDatetime, AfterValidator(_representable)]
