"""Small typed questions about protobuf field descriptors, asked all over the gateway."""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

__all__ = [
    "JSON_VALUED",
    "enum_of",
    "field_named",
    "is_map",
    "is_message",
    "message_of",
    "well_known",
]

# Messages whose JSON form is free-form JSON.
JSON_VALUED = frozenset(
    {"google.protobuf.Struct", "google.protobuf.ListValue", "google.protobuf.Value"}
)


def is_message(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE


def message_of(field: FieldDescriptor) -> Descriptor:
    message = field.message_type
    if message is None:
        raise TypeError(f"{field.full_name} is not a message field")
    return message


def enum_of(field: FieldDescriptor) -> EnumDescriptor:
    enum = field.enum_type
    if enum is None:
        raise TypeError(f"{field.full_name} is not an enum field")
    return enum


def well_known(field: FieldDescriptor) -> str | None:
    """`google.protobuf.X` for a well-known message type, else None."""
    if not is_message(field):
        return None
    name = message_of(field).full_name
    return name if name.startswith("google.protobuf.") else None


def is_map(field: FieldDescriptor) -> bool:
    return is_message(field) and bool(message_of(field).GetOptions().map_entry)


def field_named(descriptor: Descriptor, name: str) -> FieldDescriptor | None:
    """By proto name or JSON (lowerCamelCase) name, as json_format accepts both."""
    found = descriptor.fields_by_name.get(name)
    if found is None:
        found = next((f for f in descriptor.fields if f.json_name == name), None)
    return found
