"""JSON for failed `/services/*` requests that never reached the service (it is down or restarting).

The proxy sends such a request to the hub's error target, `/hub/error/<code>?url=<the request's path>`, whose
JupyterHub handler renders an HTML page. Programs calling a service expect its JSON error shape, so for service
URLs this handler answers in that shape — OpenAI's `{"error": {...}}` for OpenLoRA, `{"detail": ...}` for the
platform and chain services — and leaves every other URL to JupyterHub's page.
"""

from __future__ import annotations

import json
from typing import Any

from jupyterhub import handlers
from jupyterhub.handlers.pages import ProxyErrorHandler
from jupyterhub.utils import url_path_join
from tornado.httputil import responses

OPENAI_SHAPED = frozenset({"openlora"})


def service_error(service: str, status: int) -> dict[str, Any]:
    message = (
        f"the {service} service is not answering ({status} {responses.get(status, 'Error')}): it may be restarting; "
        "retry in a few seconds"
    )
    if service in OPENAI_SHAPED:
        return {"error": {"message": message, "type": "server_error", "param": None, "code": status}}
    return {"detail": message}


class ServiceErrorHandler(ProxyErrorHandler):
    async def get(self, status_code_s: str) -> None:
        prefix = url_path_join(self.base_url, "services/")
        url = self.get_argument("url", "")
        if not url.startswith(prefix):
            await super().get(status_code_s)
            return
        service = url[len(prefix) :].split("/", 1)[0].split("?", 1)[0]
        self.set_header("Content-Type", "application/json")
        self.set_header("Retry-After", "5")
        self.write(json.dumps(service_error(service, int(status_code_s))))


def install() -> None:
    """Swap JupyterHub's proxy error handler for ours in its handler table (read when the hub builds its app)."""
    table = handlers.default_handlers
    for index, (pattern, handler, *rest) in enumerate(table):
        if handler is ProxyErrorHandler:
            table[index] = (pattern, ServiceErrorHandler, *rest)
