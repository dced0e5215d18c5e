"""Every SQL table of the platform, imported in one place so that `SQLModel.metadata` is complete.

Alembic's autogenerate relies on it; a feature with tables adds its module here.
"""

from hub.datanets import models as datanet_tables
from hub.governance import periods as governance_tables
from hub.keys import wallets as wallet_tables
from hub.models import models as model_tables
from hub.platform import idempotency_keys as idempotency_tables
from hub.relay import outbox as outbox_tables
from hub.rewards import models as reward_tables
from hub.rewards import reservations as reservation_tables
from hub.rewards import training_models as training_tables

TABLE_MODULES = (
    outbox_tables,
    wallet_tables,
    datanet_tables,
    model_tables,
    reward_tables,
    reservation_tables,
    idempotency_tables,
    training_tables,
    governance_tables,
)
