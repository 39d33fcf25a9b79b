"""chat-bots: many scripted chat clients in one process, on the same core and shell as
chat-client (docs/SWARM.md)."""
