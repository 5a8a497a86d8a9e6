"""The HTTP face: a snapshot of pre-rendered public documents and the server that sends them."""
