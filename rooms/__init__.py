"""The desk core: sessions, messages and the store. Knows nothing of HTTP or Matrix wire formats."""
