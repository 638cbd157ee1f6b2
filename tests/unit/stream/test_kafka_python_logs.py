"""kafka-python's close race: its one meaningless ERROR record is dropped, no other."""

import logging
import socket

import pytest

import arnstream.stream._kafka_python  # noqa: F401  (installs the filter)

# kafka-python 3.x's transport (2.x has no such module, nor the race)
KafkaTCPTransport = pytest.importorskip("kafka.net.transport").KafkaTCPTransport


def _errors(caplog):
    return [r for r in caplog.records if r.name == "kafka.net.transport" and r.levelno >= logging.ERROR]


def test_a_read_racing_a_close_logs_nothing(caplog):
    transport = KafkaTCPTransport(None, None, host="127.0.0.1:9092")  # the socket as close() leaves it
    with caplog.at_level(logging.ERROR, logger="kafka.net.transport"):
        data, err = transport._sock_recv()  # what the library's IO thread runs after a readable event
    assert data == b"" and err is not None  # the library still sees the error and aborts the read
    assert _errors(caplog) == []


def test_any_other_read_error_is_still_logged(caplog):
    with socket.socket() as sock:  # never connected: recv raises OSError (not connected)
        transport = KafkaTCPTransport(None, sock, host="127.0.0.1:9092")
        with caplog.at_level(logging.ERROR, logger="kafka.net.transport"):
            _, err = transport._sock_recv()
    assert err is not None
    assert [r.exc_info[0] for r in _errors(caplog)] == [OSError]
