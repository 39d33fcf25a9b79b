"""The wire: typed messages (``messages``), the name rule (``names``), and the one parser and
one builder per message kind (``codec``: ``layouts``, ``build``, ``parse``). It imports nothing
of the layers above it."""
