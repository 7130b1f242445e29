"""wbg's command-line front end (typer): parse, call the ``wbg`` library, render."""
