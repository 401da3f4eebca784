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


def receive_input(
    input_type: Any,
    timeout: float | None = 3600,
    poll_interval: float = 10,
    raise_timeout_error: bool = False,
    exclude_keys: set[str] | None = None,
    key_prefix: str | None = None,
    flow_run_id: Any = None,
    with_metadata: bool = False,
) -> InputReceiver:
    """Iterate over the inputs of ``input_type`` sent to a flow run (the current one by
    default). A ``send_input`` in this process wakes the iteration at once; one from another
    process is seen within ``poll_interval`` seconds."""
    return InputReceiver(
        run_input_subclass_from_type(input_type),
        timeout,
        poll_interval,
        raise_timeout_error,
        exclude_keys,
        key_prefix,
        flow_run_id,
        with_metadata,
    )


class RunInput(pydantic.BaseModel):
    """Subclass with the fields a flow waits for: ``pause_flow_run(wait_for_input=MyInput)``
    returns a ``MyInput`` built from ``resume_flow_run(id, run_input={...})``."""

    model_config = pydantic.ConfigDict(extra="forbid")

    # ``MyInput.receive(...)`` is ``receive_input(MyInput, ...)``.
    receive = classmethod(receive_input)

    def send_to(self, flow_run_id: Any, sender: str | None = None) -> None:
        """Send this input to a flow run."""
        send_input(self, flow_run_id, sender=sender)

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


class AutomaticRunInput(RunInput):
    """The model made for a plain type: one field, ``value``."""


def run_input_subclass_from_type(type_: Any) -> type[pydantic.BaseModel]:
    """A ``RunInput`` for ``type_``: the class itself if it is a model, else a model with one
    field, ``value`` (as Prefect's ``AutomaticRunInput``, named after the type)."""
    if isinstance(type_, type) and issubclass(type_, pydantic.BaseModel):
        return type_
    prefix = str(getattr(type_, "__name__", getattr(type_, "_name", "")) or "").lower()
    model: type[pydantic.BaseModel] = pydantic.create_model(
        f"{prefix}AutomaticRunInput", __base__=AutomaticRunInput, value=(type_, ...)
    )
    return model


def _prefix_of(model: type[pydantic.BaseModel], key_prefix: str | None) -> str:
    return key_prefix if key_prefix is not None else f"{model.__name__.lower()}-auto"


def _store_and_run(flow_run_id: Any) -> tuple[Any, Any]:
    import uuid

    from millstream._engine.orchestrate import context as ctxmod
    from millstream._engine.settings import get_current_settings
    from millstream._engine.store import get_store

    if flow_run_id is None:
        ctx = ctxmod.flow_run_var.get()
        if ctx is None:
            raise RuntimeError("receive_input() outside a flow run needs flow_run_id=")
        flow_run_id = ctx.flow_run.id
    store = get_store(get_current_settings().database_path)
    store.ensure_open_sync()
    run_id = flow_run_id if isinstance(flow_run_id, uuid.UUID) else uuid.UUID(str(flow_run_id))
    return store, run_id


def _inputs_notifier(store: Any) -> Any:
    from millstream._engine.limits.waiters import notifier_for

    return notifier_for(store.path.with_name(store.path.name + "#inputs"))


def send_input(
    run_input: Any, flow_run_id: Any, sender: str | None = None, key_prefix: str | None = None
) -> None:
    """Send ``run_input`` (a ``RunInput``, a pydantic model, or any value pydantic can
    serialize) to a flow run, under the key ``<prefix>-<uuid>``."""
    import uuid

    if isinstance(run_input, RunInput):
        model_instance: pydantic.BaseModel = run_input
    else:
        model_instance = run_input_subclass_from_type(type(run_input))(value=run_input)
    key = f"{_prefix_of(type(model_instance), key_prefix)}-{uuid.uuid4()}"
    store, run_id = _store_and_run(flow_run_id)
    store.put_flow_run_input(run_id, key, model_instance.model_dump_json(), sender)
    _inputs_notifier(store).notify()


class InputReceiver:
    """The inputs of one type sent to a flow run, in the order they came; iterating waits up
    to ``timeout`` seconds for each next one (then stops, or raises ``TimeoutError``)."""

    def __init__(
        self,
        model: type[pydantic.BaseModel],
        timeout: float | None,
        poll_interval: float,
        raise_timeout_error: bool,
        exclude_keys: set[str] | None,
        key_prefix: str | None,
        flow_run_id: Any,
        with_metadata: bool,
    ) -> None:
        self.model = model
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.raise_timeout_error = raise_timeout_error
        self.seen = set(exclude_keys or ())
        self.prefix = _prefix_of(model, key_prefix)
        self.store, self.run_id = _store_and_run(flow_run_id)
        self.with_metadata = with_metadata

    def __iter__(self) -> InputReceiver:
        return self

    def _fresh(self) -> tuple[str, str, str | None] | None:
        for key, value, sender in self.store.read_flow_run_inputs(self.run_id, self.prefix):
            if key not in self.seen:
                return key, value, sender
        return None

    def __next__(self) -> Any:
        import time

        notifier = _inputs_notifier(self.store)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            generation = notifier.generation()
            found = self._fresh()
            if found is not None:
                return self._instance(*found)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                if self.raise_timeout_error:
                    raise TimeoutError("Timed out waiting for input")
                raise StopIteration
            notifier.wait(
                generation, self.poll_interval if left is None else min(left, self.poll_interval)
            )

    def _instance(self, key: str, value: str, sender: str | None) -> Any:
        self.seen.add(key)
        instance = self.model.model_validate_json(value)
        if self.with_metadata:
            object.__setattr__(instance, "_metadata", RunInputMetadata(key=key, sender=sender))
            return instance
        if issubclass(self.model, AutomaticRunInput):
            return instance.value  # type: ignore[attr-defined]
        return instance


def load(type_: Any, given: Any) -> Any:
    """The input ``given`` to ``resume_flow_run`` as ``type_`` (validated by pydantic)."""
    model = run_input_subclass_from_type(type_)
    if model is type_:
        return model.model_validate(given or {})
    if not (isinstance(given, dict) and set(given) == {"value"}):
        given = {"value": given}
    return model.model_validate(given).value  # type: ignore[attr-defined]


__all__ = [
    "AutomaticRunInput",
    "InputReceiver",
    "RunInput",
    "RunInputMetadata",
    "receive_input",
    "run_input_subclass_from_type",
    "send_input",
]
