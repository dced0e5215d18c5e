"""Workshop tooling: create a class of users, seed and distribute material, dry-run templates, watch progress."""
