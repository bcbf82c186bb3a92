"""X (Twitter) OAuth 2.0 with PKCE, as a confidential client: the authorization URL, the code
exchange and the signed-in user's name. Failures are LinkRefused / LinkUnavailable carrying a
short reason the callback puts in the frontend's URL; the client secret and tokens are never
logged or returned."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlencode

import requests

from authors.social import LinkRefused, LinkUnavailable, pkce_challenge

logger = logging.getLogger(__name__)

SCOPES = "users.read tweet.read"


@dataclass(frozen=True)
class XClient:
    client_id: str
    client_secret: str
    redirect_uri: str
    authorize_url: str
    api_url: str
    timeout: float

    @classmethod
    def from_settings(cls) -> XClient:
        from django.conf import settings

        c = settings.GLISK
        if not c.x_configured:
            raise LinkUnavailable(
                "linking X accounts is not configured here (X_CLIENT_ID, X_CLIENT_SECRET, "
                "X_REDIRECT_URI and FRONTEND_URL)"
            )
        return cls(
            client_id=c.x_client_id,
            client_secret=c.x_client_secret,
            redirect_uri=c.x_redirect_uri,
            authorize_url=c.x_authorize_url,
            api_url=c.x_api_url,
            timeout=c.social_timeout_seconds,
        )

    def authorization_url(self, *, state: str, code_verifier: str) -> str:
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": SCOPES,
            "state": state,
            "code_challenge": pkce_challenge(code_verifier),
            "code_challenge_method": "S256",
        }
        return f"{self.authorize_url}?{urlencode(query)}"

    def username_for_code(self, *, code: str, code_verifier: str) -> tuple[str, str]:
        """Exchange the authorization code, then ask who signed in: (user id, username)."""
        token = self._exchange(code=code, code_verifier=code_verifier)
        return self._me(token)

    def _exchange(self, *, code: str, code_verifier: str) -> str:
        try:
            response = requests.post(
                f"{self.api_url}/2/oauth2/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.redirect_uri,
                    "code_verifier": code_verifier,
                    "client_id": self.client_id,
                },
                auth=(self.client_id, self.client_secret),
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            logger.warning("x.unreachable", extra={"step": "token", "error_class": type(exc).__name__})
            raise LinkUnavailable("x_unavailable") from None
        if response.status_code >= 500 or response.status_code == 429:
            logger.warning("x.unavailable", extra={"step": "token", "status": response.status_code})
            raise LinkUnavailable("x_unavailable")
        if response.status_code != 200:
            logger.warning(
                "x.code_refused", extra={"status": response.status_code, "error": _error(response)}
            )
            raise LinkRefused("code_exchange_failed")
        try:
            token = response.json()["access_token"]
        except (ValueError, KeyError, TypeError):
            raise LinkRefused("code_exchange_failed") from None
        if not isinstance(token, str) or not token:
            raise LinkRefused("code_exchange_failed")
        return token

    def _me(self, token: str) -> tuple[str, str]:
        try:
            response = requests.get(
                f"{self.api_url}/2/users/me",
                headers={"Authorization": f"Bearer {token}"},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            logger.warning("x.unreachable", extra={"step": "me", "error_class": type(exc).__name__})
            raise LinkUnavailable("x_unavailable") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise LinkUnavailable("x_unavailable")
        if response.status_code != 200:
            logger.warning("x.profile_refused", extra={"status": response.status_code})
            raise LinkRefused("profile_failed")
        try:
            data = response.json()["data"]
            user_id, username = str(data["id"]), str(data["username"])
        except (ValueError, KeyError, TypeError):
            raise LinkRefused("profile_failed") from None
        if not _username_ok(username):
            raise LinkRefused("profile_failed")
        return user_id, username


def _username_ok(name: str) -> bool:
    """X usernames: 1-15 letters, digits and underscores (checked: it goes into a URL and a page)."""
    return 1 <= len(name) <= 15 and all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in name)


def _error(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("error", ""))[:64] if isinstance(body, dict) else ""
