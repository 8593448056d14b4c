"""Fixtures shared by the data tests."""

import socket

import pytest


@pytest.fixture
def no_network(monkeypatch):
    """Fails the test on any attempt to reach the network (tfds must not
    download anything it was not asked to)."""
    def refuse(*args, **kwargs):
        raise AssertionError('network access attempted')

    monkeypatch.setattr(socket, 'getaddrinfo', refuse)
    monkeypatch.setattr(socket.socket, 'connect', refuse)
