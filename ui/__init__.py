"""SIKD Studio's dashboard (Streamlit): an HTTP client of the API, never of the database or sikd_core."""
