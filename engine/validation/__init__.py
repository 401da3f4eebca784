"""Flow parameter validation: coerce bound arguments to their annotations as pydantic's lax mode."""

# Modules, each importing only those before it: base (Converter, _Invalid), messages (error
# wording), hints (annotation resolution), scalars (leaf types), containers and classes (which
# recurse through a builder compile passes them), compile (an annotation's converter), plan
# (validate_parameters), schema (parameter_schema, check_against_schema).

from millstream._engine.validation.plan import validate_parameters
from millstream._engine.validation.schema import check_against_schema, parameter_schema

__all__ = ["check_against_schema", "parameter_schema", "validate_parameters"]
