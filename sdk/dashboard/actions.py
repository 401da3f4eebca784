"""The dashboard's actions: cancel, resume, retry and delete runs, trigger a deployment.

Every action is a POST carrying the CSRF token of the page it came from (a double-submit
token: the form field must equal the ``millstream_csrf`` cookie, which another site can
neither read nor set); the access middleware has already refused foreign origins.
"""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from millstream._engine.exceptions import ObjectNotFound
from millstream._engine.store.rows import as_uuid

__all__ = ["Actions"]


if TYPE_CHECKING:
    from millstream.dashboard.routes import Dashboard


async def _checked_form(request: Request) -> FormData:
    from millstream.dashboard.routes import CSRF_COOKIE

    form = await request.form()
    cookie = request.cookies.get(CSRF_COOKIE, "")
    given = form.get("csrf", "")
    if not cookie or not isinstance(given, str) or not hmac.compare_digest(given, cookie):
        raise HTTPException(403, "Missing or wrong CSRF token: reload the page and try again")
    return form


class Actions:
    """POST handlers over the dashboard's store."""

    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash

    def _to(self, request: Request, path: str) -> Response:
        return RedirectResponse(request.scope.get("root_path", "") + path, status_code=303)

    async def flow_run_action(self, request: Request) -> Response:
        """``/flow-runs/{id}/cancel|resume|retry|delete``."""
        await _checked_form(request)
        action = request.path_params["action"]
        try:
            run_id = as_uuid(request.path_params["id"])
            run = await self.dash.store.read_flow_run(run_id)
        except ObjectNotFound:
            raise HTTPException(404, "No such flow run") from None
        from millstream.client.orchestration import PrefectClient

        client = PrefectClient(self.dash.store)
        try:
            if action == "cancel":
                await client.cancel_flow_run(run.id)
            elif action == "resume":
                await client.resume_flow_run(run.id)
            elif action == "retry":
                return self._to(request, f"/flow-runs/{await self._retry(run)}")
            elif action == "delete":
                await client.delete_flow_run(run.id)
                return self._to(request, "/")
            else:
                raise HTTPException(404, f"Unknown action {action!r}")
        except (ValueError, RuntimeError, TypeError) as exc:
            raise HTTPException(409, f"Cannot {action} this run: {exc}") from None
        return self._to(request, f"/flow-runs/{run.id}")

    async def _retry(self, run: Any) -> Any:
        """A new run of the same deployment with the same parameters."""
        if run.deployment_id is None:
            raise HTTPException(
                409,
                "Only runs of a deployment can be retried from the dashboard: the flow's code "
                "is in the program that called it, not here",
            )
        from millstream.deployments import arun_deployment

        new = await arun_deployment(
            run.deployment_id, parameters=dict(run.parameters), tags=list(run.tags), timeout=0
        )
        return new.id

    async def delete_runs(self, request: Request) -> Response:
        """Delete the runs ticked on the runs page."""
        form = await _checked_form(request)
        from millstream.client.orchestration import PrefectClient

        client = PrefectClient(self.dash.store)
        for value in form.getlist("run"):
            try:
                await client.delete_flow_run(as_uuid(str(value)))
            except ObjectNotFound:
                pass  # deleted meanwhile: the wish is met
        return self._to(request, "/")

    async def trigger(self, request: Request) -> Response:
        """A new run of a deployment from the form; refused values are shown on the form."""
        form = await _checked_form(request)
        deployment = await self.dash._deployment(request)
        from millstream.dashboard.routes import _parameter_fields

        given = {k: str(v) for k, v in form.items() if k.startswith("param:")}
        parameters, errors = _parse(_parameter_fields(deployment), given)
        schema = deployment.get("parameter_schema")
        if not errors and schema:
            from millstream._engine.validation.schema import check_against_schema

            try:
                check_against_schema(schema, {**deployment["parameters"], **parameters})
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        if not errors:
            from millstream.deployments import arun_deployment

            try:
                run = await arun_deployment(deployment["id"], parameters=parameters, timeout=0)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
            else:
                return self._to(request, f"/flow-runs/{run.id}")
        return await self.dash.deployment_page(request, deployment, given, errors)


def _parse(fields: list[dict[str, Any]], given: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Form values as parameters: JSON where the text is JSON (plain text for string
    parameters), empty fields left to their defaults."""
    parameters: dict[str, Any] = {}
    errors: list[str] = []
    for spec in fields:
        name = spec["name"]
        text = given.get(f"param:{name}", "").strip()
        if not text:
            if spec["required"]:
                errors.append(f"{name}: a value is required")
            continue
        if spec["type"] == "string" and not text.startswith('"'):
            parameters[name] = text
            continue
        try:
            parameters[name] = json.loads(text)
        except ValueError:
            if spec["type"] in ("", "string"):
                parameters[name] = text
            else:
                errors.append(f"{name}: {text!r} is not valid JSON for a {spec['type']}")
    return parameters, errors
