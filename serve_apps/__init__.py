"""Ray Serve applications for model serving (see README.md here)."""
