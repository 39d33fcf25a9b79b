"""chat-server: the sign-in directory of the P2P chat."""
