"""The I/O shell around the sans-I/O cores: the asyncio datagram endpoint (uvloop when installed)
and the command-line pieces both programs share. The cores (:mod:`chat_protocol`) never import it.
"""
