"""The ``shoal`` command line: one module per command group, ``common.py`` for the console and errors."""
