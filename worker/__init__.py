"""Celery workers: each runs sikd_core stages (one training job at a time per GPU) and records progress."""
