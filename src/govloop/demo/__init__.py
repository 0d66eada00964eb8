"""The demo: a simulated production service and the policy its gate enforces."""

from pathlib import Path

from govloop.demo.service import SimulatedService, Tick

__all__ = ["POLICY_FILE", "SimulatedService", "Tick"]

POLICY_FILE = Path(__file__).with_name("policy.yaml")
