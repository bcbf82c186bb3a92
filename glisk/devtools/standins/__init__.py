"""Servers that speak third parties' wire protocols, for the devnet, the demo, the container run
and the tests: Replicate's predictions API, Pinata's pinning API (with a gateway), X's OAuth 2.0
and users API, and the Farcaster name registry. `manage.py standin` serves one on its own."""
