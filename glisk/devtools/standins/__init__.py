"""Servers that speak third parties' wire protocols on 127.0.0.1, for the devnet, the demo and
the tests: X's OAuth 2.0 and users API, and the Farcaster name registry. (The Replicate and
Pinata stand-ins live with the tests; they share this package's base.)"""
