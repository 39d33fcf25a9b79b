"""The directory server's core (``core``), its rate limiter (``ratelimit``), and the health
probe that ``chat-server --probe`` runs against it (``probe``)."""
