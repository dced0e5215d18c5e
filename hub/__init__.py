"""Hub-side code of OpenLedger Notebooks: settings, the managed services and their launcher."""
