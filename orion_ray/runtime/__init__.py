"""Runtime adapters: the only code that talks to Ray."""
