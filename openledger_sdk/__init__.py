"""OpenLedger SDK: datanets, fine-tuning, inference and attribution from a notebook.

import openledger_sdk
ol = openledger_sdk.connect()      # in a hub kernel; elsewhere connect(url, token)
ol.whoami()
"""

from openledger_sdk.client import Client, connect
from openledger_sdk.errors import NotConnectedError, OpenLedgerError

__all__ = ["Client", "NotConnectedError", "OpenLedgerError", "connect"]
__version__ = "0.1.0"
