"""The ``medn`` command line (Typer + rich). ``app.py`` assembles the command modules."""
