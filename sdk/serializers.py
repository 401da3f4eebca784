"""Result serializers for ``result_serializer`` (or their names: "msgpack", "json", "pickle")."""

from millstream._engine.results import (
    JSONSerializer,
    MsgpackSerializer,
    PickleSerializer,
    Serializer,
)

__all__ = ["JSONSerializer", "MsgpackSerializer", "PickleSerializer", "Serializer"]
