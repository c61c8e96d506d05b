"""Shared test settings: Ray's token auth is decided explicitly (off) for every test process."""

import os

# Ray 2.60 turns token auth on by default and then needs ~/.ray/auth_token; tests must not depend
# on a token file left over from another run, so every cluster they start runs without auth.
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
