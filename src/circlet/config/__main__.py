"""``python -m circlet.config config ...`` / ``python -m circlet.config orb ...``."""

import typer

from .cli import config_app, orb_app

app = typer.Typer(no_args_is_help=True, add_completion=False)
app.add_typer(config_app, name="config")
app.add_typer(orb_app, name="orb")

if __name__ == "__main__":
    app()
