"""The code behind the Voila dashboards in `extensions/dashboards/` (one module per dashboard, shared parts in
`common`), so the notebooks themselves stay two lines long. See docs/dashboards.md."""
