"""OPEN-holder governance of the protocol parameters: settings, deployment, parameters in force, proposals, API."""
