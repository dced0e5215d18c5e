"""IPython magics of the OpenLedger kernel.

%openledger whoami               who this kernel acts as
%openledger help                 the list below
%%datanet contribute NAME        the cell body becomes rows of datanet NAME:
                                 JSON objects one per line, or plain text lines for a free-text datanet
"""

from __future__ import annotations

import json

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from openledger_sdk.client import Client
from openledger_sdk.errors import OpenLedgerError


def rows_from_cell(body: str) -> list:
    """Non-empty lines; JSON objects when every line is one, else the text lines themselves."""
    lines = [line for line in body.splitlines() if line.strip()]
    try:
        parsed = [json.loads(line) for line in lines]
    except json.JSONDecodeError:
        return [line.strip() for line in lines]
    return parsed if all(isinstance(row, dict) for row in parsed) else [line.strip() for line in lines]


@magics_class
class OpenLedgerMagics(Magics):
    def _client(self) -> Client:
        client = self.shell.user_ns.get("ol")
        if not isinstance(client, Client):
            raise OpenLedgerError("`ol` is not connected: run `ol = openledger_sdk.connect(url, token)` first")
        return client

    @line_magic
    def openledger(self, line: str) -> object:
        command = line.strip() or "help"
        if command == "whoami":
            me = self._client().whoami()
            print(f"{me['name']}{' (admin)' if me.get('admin') else ''}; groups: {', '.join(me['groups']) or '-'}")
            return None
        if command == "help":
            print(__doc__)
            return None
        raise OpenLedgerError(f"unknown command {command!r}: try `%openledger help`")

    @cell_magic
    def datanet(self, line: str, cell: str) -> object:
        words = line.split()
        if len(words) != 2 or words[0] != "contribute":
            raise OpenLedgerError("usage: %%datanet contribute NAME, with one row per line in the cell")
        rows = rows_from_cell(cell)
        if not rows:
            raise OpenLedgerError("the cell has no rows to contribute")
        return self._client().datanets.get(words[1]).contribute(rows)
