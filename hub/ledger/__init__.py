"""The platform's side of the ledger: compiled contracts, typed web3 wrappers, deploy-or-attach.

At platform start: `deploy_or_attach(settings)` (hub.ledger.deploy) returns the five contracts ready to use.
"""
