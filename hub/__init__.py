"""Hub-side code of OpenLedger Notebooks: settings, the managed services and their launcher."""

from hub.recursion import pin_recursion_limit

pin_recursion_limit()  # before any service module imports the eth stack (see hub.recursion)
