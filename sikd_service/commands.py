"""The service verbs of the ``sikd`` command: ``serve``, ``api``, ``worker`` and ``ui``.

Registered through the ``sikd.commands`` entry point (pyproject.toml), so ``sikd_core.cli`` finds them
without importing the service. This module imports nothing heavy: the launcher (:mod:`sikd_service.serve`)
is imported only when one of these verbs runs.
"""

from __future__ import annotations

import argparse

from sikd_core.errors import SIKDError


def _launcher():  # -> module sikd_service.serve
    try:
        from sikd_service import serve
    except ImportError as e:
        raise SIKDError(f"the service is not installed ({e}); install with: pip install -e '.[service]'") from None
    return serve


def cmd_serve(args: argparse.Namespace) -> int:
    return _launcher().serve(args)


def cmd_component(args: argparse.Namespace) -> int:
    return _launcher().run_component(args)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``serve``, ``api``, ``worker`` and ``ui`` to the ``sikd`` subcommands."""
    s = sub.add_parser("serve", help="start the service: API, a worker and the dashboard")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000, help="API port")
    s.add_argument("--ui-port", type=int, default=8501, help="dashboard port")
    s.add_argument("--storage", help="storage root (default ./sikd_data)")
    s.add_argument("--no-ui", action="store_true")
    s.add_argument("--no-worker", action="store_true")
    s.set_defaults(func=cmd_serve)

    a = sub.add_parser("api", help="the REST API alone (migrations, admin token, demo data, then uvicorn)")
    a.add_argument("--host", default="127.0.0.1")
    a.add_argument("--port", type=int, default=8000)
    a.add_argument("--storage", help="storage root (default $SIKD_STORAGE_DIR or ./sikd_data)")
    a.set_defaults(func=cmd_component, component="api")

    w = sub.add_parser("worker", help="one Celery worker (one per GPU: set CUDA_VISIBLE_DEVICES)")
    w.add_argument("--queues", help="comma-separated queues (default: train,default)")
    w.add_argument("--concurrency", type=int, default=None,
                   help="jobs at once (default $SIKD_WORKER_STAGES_PER_GPU, 1: one stage per GPU)")
    w.add_argument("--name", help="worker node name, e.g. gpu0@%%h")
    w.add_argument("--storage", help="storage root (default $SIKD_STORAGE_DIR or ./sikd_data)")
    w.set_defaults(func=cmd_component, component="worker")

    u = sub.add_parser("ui", help="the dashboard alone (talks to $SIKD_API_URL with $SIKD_API_TOKEN)")
    u.add_argument("--host", default=None, help="address to listen on (default: Streamlit's)")
    u.add_argument("--port", type=int, default=8501)
    u.set_defaults(func=cmd_component, component="ui")
