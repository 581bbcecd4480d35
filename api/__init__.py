"""SIKD Studio training service: the REST API (FastAPI) over sikd_core."""
