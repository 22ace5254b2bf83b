"""The I/O-free core: no threads, no anyio, no sockets. See ``stack.py`` for the rules."""
