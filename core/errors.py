"""Errors that services raise and views turn into 4xx responses with a readable message."""


class ArborError(Exception):
    """Base class: ``status`` is the HTTP status a view answers with, ``message`` what it says."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidInput(ArborError):
    status = 400


class NotFound(ArborError):
    status = 404


class Conflict(ArborError):
    status = 409


class RateLimited(ArborError):
    status = 429
