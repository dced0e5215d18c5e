"""`/hub/openledger/dashboards/<name>`: one link, the same for every user, to their own dashboard.

JupyterLab's OpenLedger menu and the hub pages link here; the handler sends the signed-in user through
`/hub/spawn/<user>/dashboards` (which starts the dashboards server on the first visit, and goes straight on when it
runs) to the dashboard's Voila page.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from jupyterhub.handlers.base import BaseHandler
from tornado import web

DASHBOARDS = ("contributor", "model_owner")


class DashboardLinkHandler(BaseHandler):
    @web.authenticated
    def get(self, which: str) -> None:
        if which not in DASHBOARDS:
            raise web.HTTPError(404, f"no dashboard {which!r}: there are {', '.join(DASHBOARDS)}")
        user = self.current_user
        name = quote(user.name, safe="")
        target = f"{user.prefix}dashboards/voila/render/{which}.ipynb"  # prefix: <base_url>user/<name>/
        self.redirect(f"{self.hub.base_url}spawn/{name}/dashboards?{urlencode({'next': target})}")


HANDLERS = [(r"/openledger/dashboards/([^/]+)", DashboardLinkHandler)]
