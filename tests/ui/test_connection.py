"""Before any page: the dashboard explains in words when the API is down or the token is missing or wrong."""

from __future__ import annotations

import pytest

from tests.ui.apptest_helpers import all_text, no_exceptions, texts

#: Generous: the first test of a session also starts the services (and trains the sweep).
pytestmark = pytest.mark.timeout(300)

PAGES = ["experiments", "datasets", "new_experiment", "experiment", "compare", "models"]


@pytest.mark.parametrize("page", PAGES)
def test_api_down_names_the_url_and_how_to_start_it(dashboard, dead_url, page):
    at = dashboard(page, url=dead_url, token="whatever")
    no_exceptions(at)
    errors = texts(at.main, "error")  # in the main area, where the page would be
    assert len(errors) == 1, errors
    assert dead_url in errors[0] and f"GET {dead_url}/me" in errors[0]
    assert "sikd serve" in errors[0] and "SIKD_API_URL" in errors[0]
    assert not at.title, "the page must not render without an API"


def test_missing_token_asks_for_one_then_the_sidebar_token_is_used(dashboard, services, queue_user):
    at = dashboard("experiments", url=services.queue.url, token=None)
    no_exceptions(at)
    warning = "\n".join(texts(at.main, "warning"))
    assert "needs a token" in warning and "missing bearer token" in warning and "sikd serve" in warning
    assert not at.title
    at.sidebar.text_input(key="api_token").input(queue_user.token).run()
    no_exceptions(at)
    assert [t.value for t in at.title] == ["Experiments"]
    assert at.session_state["api_token"] == queue_user.token
    assert "No experiments yet" in all_text(at)


def test_wrong_token_is_refused_in_words(dashboard, services):
    at = dashboard("datasets", url=services.queue.url, token="not-a-real-token")
    no_exceptions(at)
    warning = "\n".join(texts(at.main, "warning"))
    assert "invalid or revoked token" in warning and "API token" in warning
    assert not at.title


def test_sidebar_shows_health_and_user(dashboard, services, queue_user):
    at = dashboard("experiments", url=services.queue.url, token=queue_user.token)
    captions = "\n".join(texts(at.sidebar, "caption"))
    me = queue_user.get("/me")
    assert f"Signed in as **{me['name']}**" in captions
    # the queue service runs no worker: the dashboard says what that means
    assert "no worker answers" in captions and services.queue.url in captions
