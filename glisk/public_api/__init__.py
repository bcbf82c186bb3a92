"""The API the collection's public web frontend calls under `/api/authors/`: author profiles,
an author's tokens, the leaderboard, and signed prompt updates. Its shapes are the frontend's
contract, not ours to change."""
