"""The REST API: FastAPI app (``app``), its Serve deployment (``serve_app``), auth and limits."""
