"""`python -m hub.openlora_service`: the OpenLoRA managed service, listening within a second or two.

The hub starts this, not `hub.openlora.hub_service` directly: importing the `hub.openlora` package pulls in torch and
transformers (4-6 s here, far more on a busy machine) before the port is bound. Here the port is bound first and
`/health` says `loading` until the model is in memory (hub.deferred_app).
"""

from __future__ import annotations

import logging

from hub.deferred_app import DeferredApp
from hub.service_app import serve
from hub.settings import load_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load_settings()

    def build():  # noqa: ANN202 - an ASGI app
        from hub.openlora.hub_service import build_app  # torch: seconds, so after the port is bound

        return build_app(settings)

    serve(DeferredApp("openlora", build), settings.services.openlora_port)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
