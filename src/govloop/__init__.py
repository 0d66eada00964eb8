"""govloop: the governance and feedback loop for models in production."""

from govloop.config import Settings
from govloop.errors import GovloopError

__all__ = ["GovloopError", "Settings", "__version__"]

__version__ = "0.1.0"
