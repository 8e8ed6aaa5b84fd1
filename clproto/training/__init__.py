"""Training networks from scratch on a stream of experiences (shared by the trained strategies)."""
