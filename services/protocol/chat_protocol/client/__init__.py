"""The chat client's core: :class:`~chat_protocol.client.core.ClientCore` routes between its parts
(server link and directory session, peer links, relay link, send pipeline, receive path, pins,
kept lookup answers), one job each."""
