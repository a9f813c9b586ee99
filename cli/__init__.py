"""``harvest``, the command line: the top layer, over the library, the flows and the web app."""
