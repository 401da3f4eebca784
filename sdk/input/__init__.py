"""Flow-run input (Prefect's ``prefect.input``): ``RunInput`` models that a paused or suspended
flow run waits for. Needs pydantic: ``pip install 'millstream[pydantic]'``."""

from millstream.input.run_input import (
    AutomaticRunInput,
    InputReceiver,
    RunInput,
    RunInputMetadata,
    receive_input,
    run_input_subclass_from_type,
    send_input,
)

__all__ = [
    "AutomaticRunInput",
    "InputReceiver",
    "RunInput",
    "RunInputMetadata",
    "receive_input",
    "run_input_subclass_from_type",
    "send_input",
]
