"""The chat client's core: :class:`~chat_protocol.client.core.ClientCore` routes between its parts
(directory session, peer links, send pipeline, receive path, pins), one job each."""
