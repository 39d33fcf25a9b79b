"""The wire: typed messages (``messages``), the name rule (``names``), and the one parser and
one builder per message kind (``codec``). It imports nothing of the layers above it."""
