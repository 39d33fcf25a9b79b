"""The directory server's core: ``core`` routes each datagram to its part (``signin``: HELLOs and
registration; ``users``: the user table; ``hints`` and ``relay``: PUNCH hints and the relay);
``bindings`` holds which key owns which name; ``probe`` is the health probe that ``chat-server
--probe`` runs against it. Its token buckets are the secure layer's
(:mod:`chat_protocol.secure.ratelimit`), which clients use against handshake floods too."""
