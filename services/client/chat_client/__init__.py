"""chat-client: sign in to the directory, then message other users directly."""
