"""The metrics exporter: where it listens, and a bad address named by its key."""

import urllib.request

import pytest

from arnstream.errors import ConfigError
from arnstream.observability import ServeMetrics, exposed_address, start_exporter


def test_port_zero_exposes_the_port_it_was_given():
    metrics = ServeMetrics()
    server = start_exporter("127.0.0.1:0", metrics.registry)
    try:
        address = exposed_address(server)
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        body = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
        assert "arnstream_serve_up" in body
    finally:
        server.shutdown()


def test_an_empty_address_starts_nothing():
    assert start_exporter("", ServeMetrics().registry) is None


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1:http", "127.0.0.1:"])
def test_a_malformed_address_names_its_key(address):
    with pytest.raises(ConfigError, match="serve.metrics_address"):
        start_exporter(address, ServeMetrics().registry)
