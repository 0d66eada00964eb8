"""The SDK production services import: :class:`Govloop` emits events and assigns variants.

Usage::

    from govloop.client import Govloop

    with Govloop.connect() as gl:   # GOVLOOP_KAFKA, or a running `govloop up`
        gl.emit_prediction(model="churn", model_version="3", request_id="r1", score=0.7)
        variant = gl.assign("new-ranker", "user-42", ["control", "treatment"])
"""

from govloop.client._stats import SdkStats
from govloop.client._variants import pick_variant
from govloop.client.sdk import MAX_ATTEMPTS, PRODUCER_DEFAULTS, Govloop

__all__ = ["MAX_ATTEMPTS", "PRODUCER_DEFAULTS", "Govloop", "SdkStats", "pick_variant"]
