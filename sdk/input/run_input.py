"""``RunInput``: a pydantic model of the input a paused flow run waits for."""

from __future__ import annotations

from typing import Any

try:
    import pydantic
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "millstream.input (RunInput) needs pydantic, an optional extra: "
        "pip install 'millstream[pydantic]'"
    ) from exc


class RunInputMetadata(pydantic.BaseModel):
    """Where an input was given: the flow run it is for, and its key."""

    key: str
    sender: str | None = None
    receiver: Any = None


class RunInput(pydantic.BaseModel):
    """Subclass with the fields a flow waits for: ``pause_flow_run(wait_for_input=MyInput)``
    returns a ``MyInput`` built from ``resume_flow_run(id, run_input={...})``."""

    model_config = pydantic.ConfigDict(extra="forbid")

    @classmethod
    def with_initial_data(cls, description: str | None = None, **kwargs: Any) -> type[RunInput]:
        """A subclass whose fields default to ``kwargs`` (a form pre-filled for the person
        resuming the run); ``description`` is kept as its docstring."""
        fields: dict[str, Any] = {
            name: (info.annotation, kwargs.get(name, info.default))
            for name, info in cls.model_fields.items()
        }
        model: type[RunInput] = pydantic.create_model(cls.__name__, __base__=cls, **fields)
        if description is not None:
            model.__doc__ = description
        return model


def run_input_subclass_from_type(type_: Any) -> type[pydantic.BaseModel]:
    """A ``RunInput`` for ``type_``: the class itself if it is a model, else a model with one
    field, ``value`` (as Prefect's ``AutomaticRunInput``)."""
    if isinstance(type_, type) and issubclass(type_, pydantic.BaseModel):
        return type_
    model: type[pydantic.BaseModel] = pydantic.create_model(
        f"{getattr(type_, '__name__', 'Value')}Input", __base__=RunInput, value=(type_, ...)
    )
    return model


def load(type_: Any, given: Any) -> Any:
    """The input ``given`` to ``resume_flow_run`` as ``type_`` (validated by pydantic)."""
    model = run_input_subclass_from_type(type_)
    if model is type_:
        return model.model_validate(given or {})
    if not (isinstance(given, dict) and set(given) == {"value"}):
        given = {"value": given}
    return model.model_validate(given).value  # type: ignore[attr-defined]
