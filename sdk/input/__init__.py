"""Flow-run input (Prefect's ``prefect.input``): ``RunInput`` models that a paused or suspended
flow run waits for. Needs pydantic: ``pip install 'millstream[pydantic]'``."""

from millstream.input.run_input import RunInput, RunInputMetadata, run_input_subclass_from_type

__all__ = ["RunInput", "RunInputMetadata", "run_input_subclass_from_type"]
