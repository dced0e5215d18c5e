"""The platform's features, in start order. A new feature adds one line here."""

from __future__ import annotations

from hub.datanets import api as datanets
from hub.governance import api as governance
from hub.models import api as models
from hub.platform import ledger_feature, progress, users
from hub.platform.runtime import Feature
from hub.rewards import api as rewards
from hub.rewards import training_api as training

FEATURES: list[Feature] = [
    users.feature,
    progress.feature,
    ledger_feature.feature,  # before the features that enqueue chain writes
    datanets.feature,
    models.feature,  # after datanets: publishing checks the datanet versions a model was trained on
    rewards.feature,  # after the ledger: settles inference fees into epochs and claims
    governance.feature,  # OPEN holders' votes on the protocol parameters (after the ledger)
    training.feature,  # after datanets and the ledger: prices runs from datanet versions, charges wallets
]
