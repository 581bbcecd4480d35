"""SIKD Studio service core: settings, database tables and queries, storage, the job queue and the service
operations (experiments, dataset ingest and deletion, predictions).

The floor between the pure library and the processes: it imports ``sikd_core`` and is imported by
``api`` (HTTP), ``worker`` (Celery tasks) and the ``sikd serve|api|worker|ui`` commands; it imports
none of them.
"""

from sikd_service.threadsafe_ast import install as _install_threadsafe_ast

_install_threadsafe_ast()  # before any thread of a service process starts (see sikd_service/threadsafe_ast.py)
