"""The SDK production services import: :class:`Govloop` emits events and assigns variants.

>>> from govloop.client import Govloop
>>> with Govloop.connect() as gl:  # doctest: +SKIP
...     gl.emit_feedback(request_id="r1", positive=True)
"""

from govloop.client.sdk import MAX_ATTEMPTS, PRODUCER_DEFAULTS, Govloop, SdkStats, pick_variant

__all__ = ["MAX_ATTEMPTS", "PRODUCER_DEFAULTS", "Govloop", "SdkStats", "pick_variant"]
