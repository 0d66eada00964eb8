"""``govloop demo``: placeholder replaced below."""


def demo() -> None:
    """Run the whole loop against a simulated production service."""
