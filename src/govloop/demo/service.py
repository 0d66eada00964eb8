"""A simulated production service: a real scikit-learn classifier serving a stream.

The model is trained on scikit-learn's bundled breast-cancer dataset.  Each
simulated minute the service answers ``requests_per_minute`` requests drawn
from held-out data; from ``drift_minute`` on, the inputs drift (sensors
out of calibration: every reading creeps up, with noise), so accuracy drops while
the service keeps answering.  Some users send back the true label, some a
thumbs up or down.  Deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

__all__ = ["SimulatedService", "Tick"]


@dataclass
class Tick:
    """One simulated minute of traffic: SDK keyword arguments, ready to emit."""

    minute: int
    drifted: bool
    predictions: list[dict[str, Any]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    correct: int = 0


class SimulatedService:
    """Serve a trained classifier over simulated minutes, with a drift part-way."""

    model_name = "cancer-screen"
    model_version = "2.3.0"

    def __init__(
        self,
        start: datetime,
        minutes: int = 14,
        drift_minute: int = 7,
        requests_per_minute: int = 150,
        label_rate: float = 0.6,
        seed: int = 7,
        model_version: str = "2.3.0",
    ) -> None:
        from sklearn.datasets import load_breast_cancer
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        data = load_breast_cancer()
        x_train, x_live, y_train, y_live = train_test_split(
            data.data, data.target, test_size=0.5, random_state=seed, stratify=data.target
        )
        self.model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        self.model.fit(x_train, y_train)
        self.classes = [str(data.target_names[c]) for c in self.model.classes_]
        self.feature_names = [str(n).replace(" ", "_") for n in data.feature_names]
        self.x_live, self.y_live = x_live, y_live
        self.start, self.minutes, self.drift_minute = start, minutes, drift_minute
        self.requests_per_minute, self.label_rate = requests_per_minute, label_rate
        self.rng = np.random.default_rng(seed)
        self.model_version = model_version
        self.holdout_accuracy = float(self.model.score(x_live, y_live))

    def ticks(self) -> Iterator[Tick]:
        """Yield each simulated minute's traffic, in order."""
        for minute in range(self.minutes):
            yield self._tick(minute)

    def _tick(self, minute: int) -> Tick:
        drifted = minute >= self.drift_minute
        n = self.requests_per_minute
        rows = self.rng.integers(0, len(self.x_live), size=n)
        x = self.x_live[rows].copy()
        if drifted:  # sensors drifting out of calibration: readings creep up, noise grows
            scale = min(1.4, 1.1 + 0.06 * (minute - self.drift_minute))
            x = x * scale + self.rng.normal(0, 0.1, size=x.shape) * x.std(axis=0)
        proba = self.model.predict_proba(x)
        tick = Tick(minute=minute, drifted=drifted)
        base = self.start + timedelta(minutes=minute)
        for i in range(n):
            ts = base + timedelta(seconds=60.0 * i / n)
            request_id = f"req-{minute:03d}-{i:04d}"
            probabilities = {c: float(p) for c, p in zip(self.classes, proba[i], strict=True)}
            predicted = max(probabilities, key=probabilities.__getitem__)
            truth = self.classes[int(self.y_live[rows[i]])]
            tick.correct += predicted == truth
            latency = float(self.rng.gamma(4.0, 12.0 if not drifted else 14.0))
            tick.predictions.append(
                {
                    "model": self.model_name,
                    "model_version": self.model_version,
                    "request_id": request_id,
                    "ts": ts,
                    "features": {
                        name: float(v)
                        for name, v in zip(self.feature_names[:8], x[i, :8], strict=True)
                    },
                    "probabilities": probabilities,
                    "latency_ms": latency,
                    "segment": {"site": "north" if rows[i] % 2 else "south"},
                }
            )
            # feedback follows within seconds, inside the same minute
            later = min(
                ts + timedelta(seconds=float(self.rng.uniform(1, 20))),
                base + timedelta(seconds=59.9),
            )
            if self.rng.random() < self.label_rate:
                tick.feedback.append(
                    {"request_id": request_id, "label": truth, "ts": later, "source": "pathology"}
                )
            elif self.rng.random() < 0.5:
                tick.feedback.append(
                    {
                        "request_id": request_id,
                        "positive": predicted == truth,
                        "ts": later,
                        "source": "clinician",
                    }
                )
        return tick
