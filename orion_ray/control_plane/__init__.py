"""The control-plane role (docs/regions.md): regions, dispatch, global quotas, config as data."""
