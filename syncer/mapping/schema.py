"""The shape of a mapping file, validated with line numbers by :mod:`syncer.yamlsrc`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from syncer.fields import FieldType
from syncer.mapping.context import Source


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldDoc(_Strict):
    """One field: its type and the expression (or template) that fills it. The short form
    ``name: expression`` is a string field."""

    type: FieldType = FieldType.STRING
    value: str = Field(min_length=1)
    options: list[str] = Field(default_factory=list)  # allowed values of an enum field
    max_length: int | None = Field(default=None, ge=1)  # tighter than the connector's limit

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        # One shape to validate (not a union of two), so a mistake gives one error, not one
        # per alternative.
        if isinstance(data, str):
            return {"value": data}
        if data is None:
            raise ValueError("has no value; write an expression, e.g. `user.email`")
        if not isinstance(data, dict):
            raise ValueError(
                f"must be an expression (text; quote a constant: '{data}') or "
                "{type: ..., value: ...}"
            )
        return data


class ObjectDoc(_Strict):
    """One destination object."""

    source: Source
    key: str = Field(min_length=1)
    fields: dict[str, FieldDoc]
    hints: dict[str, str] = Field(default_factory=dict)
    associations: list[str] = Field(default_factory=list)


class MappingDoc(_Strict):
    """A mapping file."""

    objects: dict[str, ObjectDoc]
