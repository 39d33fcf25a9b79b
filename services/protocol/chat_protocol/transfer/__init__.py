"""Reliable delivery over datagrams: messages to peers (``outbound``, ``inbound``, over
``rangeset``) and requests to the server (``requests``).

Messages: reliable, ordered, exactly-once, one direction of one peer pair.

:class:`~chat_protocol.transfer.outbound.Outbound` is what a sender keeps per destination
address; :class:`~chat_protocol.transfer.inbound.Inbound` is what a receiver keeps per sending
address. Neither touches a socket or a clock.

* A message is cut into chunks of :data:`CHUNK_PAYLOAD_BYTES` at aligned offsets; every chunk is a
  DATA datagram naming (session, stream, seq, msg_id, offset, total).
* "Delivered" means the receiver's user was shown the message. :meth:`Inbound.on_data` hands
  whole messages to the client core in order; the core calls :meth:`Inbound.shown` once its user
  saw one. Until then the receiver acknowledges the message with its full byte range and
  ``complete=False``; after, with ``complete=True`` (sent at once, not only when asked).
* The receiver acknowledges what it holds: ``complete``, or the byte ranges it has (the lowest
  ones that fit: an ACK is never larger than the DATA that caused it). Datagrams received in one
  batch share one ACK per message.
* The sender retransmits an unacknowledged chunk after a retransmission timeout estimated from
  round-trip samples (RFC 6298, Karn's rule), doubling per retry up to a cap, and at once when
  :data:`FAST_RETRANSMIT_THRESHOLD` later chunks of the same message were acknowledged (fast
  retransmit). At most :data:`SEND_WINDOW_CHUNKS` chunks are in flight per destination.
* A message whose bytes are all acknowledged but that is not ``complete`` yet keeps its last
  chunk in flight as a probe, retransmitted with the same backoff: so a lost ``complete`` ACK is
  recovered, and a receiver that never shows the message runs into the delivery timeout.
* If the destination acknowledges nothing new (no new bytes, no completion) for
  ``delivery_timeout_s`` while messages are pending, every pending message fails
  (:attr:`FailReason.TIMEOUT`); DATA carries ``base`` (lowest unresolved seq) so the receiver
  skips the gap instead of waiting for it forever. Stale or duplicate chunks are acknowledged,
  never delivered twice.

Costs per datagram do not grow with what is held: byte coverage is a :class:`RangeSet` (binary
search), an ACK reads at most :data:`MAX_ACK_RANGES` ranges of it, and the sender's per-ACK work
is bounded by the chunks of that message in flight (at most the window).
"""
