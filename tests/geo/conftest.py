"""Real walking networks (Helsinki, Chengdu) and their networkx reference, per test module."""

from __future__ import annotations

import pytest

from tests.geo.walk_support import chengdu, helsinki, nx_graph
from tests.shared_data import shared_data_dir


@pytest.fixture(scope="module", params=["helsinki", "chengdu"])
def network(request):
    if request.param == "helsinki":
        return helsinki()
    return chengdu(str(shared_data_dir() / "chengdu" / "central_2018.osm"))


@pytest.fixture(scope="module")
def reference(network):
    return nx_graph(network.graph)
