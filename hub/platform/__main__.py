"""Run the platform service: `python -m hub.platform` (the hub starts it as a managed service)."""

from hub.platform.app import create_app
from hub.service_app import serve
from hub.settings import load_settings

if __name__ == "__main__":
    settings = load_settings()
    serve(create_app(settings), settings.services.platform_port)
