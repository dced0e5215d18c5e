"""Datanets: named, licensed, versioned datasets with per-row provenance (see docs/datanets.md).

Modules: `config` (limits), `schema` (row schemas), `canonical` (row hashes), `parsing` (file formats), `dedup`
(exact + MinHash near duplicates), `ingest` (the validation pipeline), `snapshots` (Parquet + Merkle roots),
`models` (SQL tables), `service` (business logic), `api` (routes and the platform `Feature`), `demo_data`.
"""
