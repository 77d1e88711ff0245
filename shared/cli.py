"""The `bapas` command."""
import click

@click.group()
def main() -> None:
    """bapas: the case system for Balai Pemasyarakatan offices."""
