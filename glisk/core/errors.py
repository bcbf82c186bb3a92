"""The one base class for refusals the application explains to whoever asked."""

from __future__ import annotations


class ApplicationError(Exception):
    """A refusal with a message that is safe to show: to an API client (as `status_code` with
    `error_type`), to an operator in the admin, or on a command's output."""

    status_code: int = 400
    error_type: str = "bad_request"
    headers: dict[str, str] = {}
