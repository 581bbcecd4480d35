"""SIKD Studio service core: settings, database tables and queries, storage, the job queue and the service
operations (experiments, dataset ingest and deletion, predictions).

The floor between the pure library and the processes: it imports ``sikd_core`` and is imported by
``api`` (HTTP), ``worker`` (Celery tasks) and the ``sikd serve|api|worker|ui`` commands; it imports
none of them.
"""
