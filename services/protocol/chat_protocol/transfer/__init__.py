"""Reliable delivery over datagrams: messages to peers (``outbound`` on ``recovery`` and
``outmessage``, ``inbound``, over ``rangeset``) and requests to the server (``requests``).

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
* Loss recovery and congestion control follow RFC 9002, per destination: every DATA sent
  (retransmissions too) gets a new packet number; ACKs carry the newest ranges of packet numbers
  received and the ack delay. A packet is lost when :data:`K_PACKET_THRESHOLD` later ones were
  acknowledged or 9/8 RTT passed since it was sent and a later one was acknowledged; its chunk
  is sent again (new packet number) unless the destination holds it. With nothing
  acknowledged for a probe timeout (PTO, doubling), two probes go out. NewReno
  (:mod:`~chat_protocol.transfer.congestion`) bounds the bytes in flight, a token-bucket pacer
  spaces them (its deadline is one more input to ``next_timer``), and at most
  :data:`SEND_WINDOW_CHUNKS` are in flight whatever the window (flow control).
* A message whose bytes are all acknowledged but that is not ``complete`` yet keeps its last
  chunk as a probe, sent again after a PTO, backing off: so a lost ``complete`` ACK is
  recovered, and a receiver that never shows the message runs into the delivery timeout.
* If the destination acknowledges nothing new (no new bytes, no completion) for
  ``delivery_timeout_s`` while messages are pending, every pending message fails
  (:attr:`FailReason.TIMEOUT`); DATA carries ``base`` (lowest unresolved seq) so the receiver
  skips the gap instead of waiting for it forever. Stale or duplicate chunks are acknowledged,
  never delivered twice.

Costs per datagram do not grow with what is held: byte coverage is a :class:`RangeSet` (binary
search), an ACK reads at most :data:`MAX_ACK_RANGES` ranges of it, and the sender's per-ACK work
is bounded by the packets in flight (at most the window).
"""
