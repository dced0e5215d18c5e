"""Configuration of every user server (JupyterLab, and Voila on the dashboards server), loaded because the spawner
puts this folder on JUPYTER_CONFIG_PATH: the OpenLedger look and a landing page without detours."""

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
c = get_config()  # noqa: F821 - provided by traitlets when it loads this file

# overrides.json there: no news toast or update check, and the OpenLedger menu with the dashboards.
c.LabApp.app_settings_dir = str(HERE / "lab_settings")
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
c.LabApp.news_url = None
# The plain Python kernel has no `ol`: a newcomer who picks it is lost. An admin may offer it (spawner.python_kernel).
# New notebooks and consoles, and notebooks naming no kernel, get ours without asking.
c.MappingKernelManager.default_kernel_name = "openledger-python"
c.KernelSpecManager.default_kernel_name = "openledger-python"
if os.environ.get("OPENLEDGER_PYTHON_KERNEL") != "1":
    c.KernelSpecManager.allowed_kernelspecs = {"openledger-python"}
# Dashboards (Voila) render with the template in data/voila/templates (on JUPYTER_PATH): no request leaves the hub.
c.VoilaConfiguration.template = "openledger"
