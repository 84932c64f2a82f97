"""Header fields as data: what each model writes into the container's parameter list.

The container stores a model's parameters as unnamed unsigned varints. Each entropy model and codec
family declares its fields once, as a :class:`HeaderSchema` (name, largest value, trailing fields
that may be left out); packing, the count and range checks of a file, and the field names in
documentation and errors come from that declaration. Checks that relate a field to the model
(``top_k`` below the codebook size, the slice count within the schedule) stay with the model,
after :meth:`HeaderSchema.unpack` has named and range-checked every value.
"""

from __future__ import annotations

from dataclasses import dataclass

from rdvq.coding.format import MAX_VARINT_BYTES
from rdvq.errors import InvalidHeaderError

VARINT_MAX = (1 << (7 * MAX_VARINT_BYTES)) - 1  # a field the model bounds itself (e.g. by its schedule)


@dataclass(frozen=True)
class HeaderField:
    """One unsigned integer of a model's header. ``optional`` fields come last and are left out of
    a file when they do not apply (their value is then None)."""

    name: str
    high: int
    optional: bool = False


@dataclass(frozen=True)
class HeaderSchema:
    owner: str  # names the model in errors, e.g. "entropy model hypervq"
    fields: tuple[HeaderField, ...] = ()

    def __post_init__(self) -> None:
        flags = [f.optional for f in self.fields]
        if flags != sorted(flags):
            raise ValueError(f"{self.owner}: optional header fields must come last")

    @property
    def counts(self) -> tuple[int, ...]:
        """The parameter counts a file of this model may have."""
        required = sum(not f.optional for f in self.fields)
        return tuple(range(required, len(self.fields) + 1))

    def pack(self, **values: int | None) -> tuple[int, ...]:
        """The parameters in declaration order; trailing optional fields whose value is None are
        left out. Every field must be given (None only for optional ones)."""
        if set(values) != {f.name for f in self.fields}:
            raise ValueError(f"{self.owner}: header values {sorted(values)} differ from the fields {self.names()}")
        packed = [values[f.name] for f in self.fields]
        while packed and packed[-1] is None and self.fields[len(packed) - 1].optional:
            packed.pop()
        for field, value in zip(self.fields, packed):
            if value is None or not 0 <= value <= field.high:
                raise ValueError(f"{self.owner}: header field {field.name}={value} outside 0..{field.high}")
        return tuple(int(v) for v in packed)

    def unpack(self, parameters: tuple[int, ...]) -> dict[str, int | None]:
        """Named values of a file's parameters (left-out optional fields None), or
        :class:`~rdvq.errors.InvalidHeaderError` for a count or value this model never writes."""
        if len(parameters) not in self.counts:
            expected = " or ".join(map(str, self.counts))
            raise InvalidHeaderError(f"file has {len(parameters)} parameters; {self.owner} writes {expected}")
        for field, value in zip(self.fields, parameters):
            if value > field.high:
                raise InvalidHeaderError(f"{self.owner}: {field.name.replace('_', ' ')} {value} exceeds {field.high}")
        values: dict[str, int | None] = {f.name: None for f in self.fields}
        values.update({f.name: v for f, v in zip(self.fields, parameters)})
        return values

    def names(self) -> list[str]:
        return [f.name for f in self.fields]
