"""The directory server's core (``core``), the health probe that ``chat-server --probe`` runs
against it (``probe``), and its name bindings (``bindings``). Its token buckets are the secure
layer's (:mod:`chat_protocol.secure.ratelimit`), which clients use against handshake floods too."""
