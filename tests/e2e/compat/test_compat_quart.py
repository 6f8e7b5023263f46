"""Quart under juggler and Uvicorn."""

import pytest
from harness import FLASK_STYLE_CRAWL, pair_fixture

servers = pair_fixture("quart_compat:app", "asgi")

CRAWL = FLASK_STYLE_CRAWL


@pytest.mark.parametrize("req", CRAWL, ids=lambda r: r.id)
def test_quart(servers, req):
    servers.compare(req)
