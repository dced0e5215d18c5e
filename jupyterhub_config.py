"""JupyterHub configuration for OpenLedger Notebooks.

All values come from `openledger.toml` (or `$OPENLEDGER_CONFIG`) and `OPENLEDGER_*` env overrides;
see hub/hub_config.py for what each setting turns into. Start the hub with `make run`.
"""

from hub.hub_config import configure
from hub.secrets import ensure_secrets
from hub.settings import load_settings

c = get_config()  # noqa: F821 - provided by JupyterHub when it loads this file

_settings = load_settings()
configure(c, _settings, ensure_secrets(_settings.data_dir, _settings.hub.shared_password))
