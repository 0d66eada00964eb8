"""Stream agents (faust): thin adapters from input topics to stats/ and gates/."""

from govloop.streams.app import create_app

__all__ = ["create_app"]
