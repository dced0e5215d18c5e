"""The chain service: an authenticated JSON-RPC gateway in front of the embedded anvil node or an external RPC."""
