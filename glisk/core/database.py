"""What is wrong with the database connection, said without the driver's text (which names hosts
and users): for the one-line error of `manage.py` and the workers' wait for the database."""

from __future__ import annotations

REFUSED_CREDENTIALS = "the database refused the credentials (password authentication failed)"
NO_SUCH_DATABASE = "the database named in the URL does not exist"


def database_problem(exc: BaseException) -> str:
    """A short description of a connection error; `refused` ones will not heal by waiting."""
    text = str(exc)
    if "password authentication failed" in text or "no password supplied" in text:
        return REFUSED_CREDENTIALS
    if "does not exist" in text and "database" in text:
        return NO_SUCH_DATABASE
    return f"the database is not reachable ({type(exc).__name__})"


def waiting_cannot_help(problem: str) -> bool:
    return problem in (REFUSED_CREDENTIALS, NO_SUCH_DATABASE)
