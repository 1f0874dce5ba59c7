"""Errors that services raise and views turn into 4xx responses with a readable message, and the
errors that mean a backing service (PostgreSQL, Redis, the broker) is down for now (503)."""

import django.db
import kombu.exceptions
import redis.exceptions


class ArborError(Exception):
    """Base class: ``status`` is the HTTP status a view answers with, ``message`` what it says."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidInput(ArborError):
    status = 400


class Forbidden(ArborError):
    """Seen but not allowed (changing a shared object without being an administrator)."""

    status = 403


class NotFound(ArborError):
    status = 404


class Conflict(ArborError):
    status = 409


class RateLimited(ArborError):
    status = 429


# A backing service is unreachable: the request may succeed when it is back (HTTP 503, Retry-After).
SERVICE_UNAVAILABLE = (
    django.db.OperationalError,
    django.db.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
)
UNAVAILABLE_MESSAGE = "A backing service (database or Redis) is unavailable right now; try again in a few seconds."
