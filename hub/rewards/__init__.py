"""Rewards: metering of inferences (fee and split per record), epoch settlement on the ledger, claims.

`hub.rewards.metering.record_inference` is what an inference server calls per request (light imports);
`hub.rewards.api.feature` is the platform feature (routes, background settlement). See docs/rewards.md.
"""
