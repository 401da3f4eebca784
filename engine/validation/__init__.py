"""Flow parameter validation: coerce bound arguments to their annotations as pydantic's lax mode."""

from engine.validation.scalars import check_against_schema, parameter_schema, validate_parameters

__all__ = ["check_against_schema", "parameter_schema", "validate_parameters"]
