"""core.lazy.per_process: built on first use, once for all threads, per argument tuple (bounded),
and again in a forked child process."""

from __future__ import annotations

import os
import threading
import time
import warnings

import pytest

from core.lazy import per_process


@pytest.fixture(autouse=True)
def _model_endpoint():
    """Overrides tests/conftest.py's autouse fixture: these checks need no model server."""


def _counting():
    built = []

    def factory(*args, **kwargs):
        time.sleep(0.01)  # a slow build: concurrent callers arrive while it runs
        built.append((args, kwargs))
        return object()

    return built, factory


def test_threads_asking_at_once_share_one_build():
    built, factory = _counting()
    get = per_process(factory)
    start = threading.Barrier(8)
    got = []

    def ask():
        start.wait()
        got.append(get())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1 and len({id(o) for o in got}) == 1


def test_one_object_per_arguments_and_the_oldest_goes_past_maxsize():
    built, factory = _counting()
    get = per_process(maxsize=2)(factory)
    a, b = get("a"), get("b", read=5.0)
    assert get("a") is a and get("b", read=5.0) is b and get("b") is not b
    assert get("a") is not a  # "b" and ("b", read=5.0) pushed "a" out
    assert len(built) == 4


def test_cache_clear_builds_again():
    built, factory = _counting()
    get = per_process(factory)
    first = get()
    get.cache_clear()
    assert get() is not first and len(built) == 2


def test_a_forked_child_builds_its_own():
    built, factory = _counting()
    get = per_process(factory)
    parent = get()
    read, write = os.pipe()
    with warnings.catch_warnings():  # the child only calls get() and exits: no lock of another thread is taken
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: it must not reuse the parent's object (its sockets, locks, threads)
        try:
            child = get()
            os.write(write, b"own" if child is not parent and get() is child else b"shared")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 16)
    os.waitpid(pid, 0)
    os.close(read)
    assert answer == b"own"
    assert get() is parent and len(built) == 1  # the parent keeps its own
