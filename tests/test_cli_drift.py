"""``govloop drift`` and ``govloop metrics`` against a real SQLite file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from govloop.cli import app
from govloop.config import Settings
from govloop.schemas import MetricSnapshot, Prediction
from govloop.stores.sql import DriftStatusRow, create_engine_for, init_db, save_snapshot


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in ("GOVLOOP_KAFKA", "GOVLOOP_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOVLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GOVLOOP_DB_URL", f"sqlite:///{tmp_path / 'g.db'}")
    settings = Settings()
    init_db(create_engine_for(settings))
    return settings


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_status_without_results(env: Settings) -> None:
    code, out = run("drift", "status")
    assert code == 0 and "no drift results yet" in out
    assert json.loads(run("drift", "status", "--json")[1]) == []


def test_reference_from_files(env: Settings, tmp_path: Path) -> None:
    rows = tmp_path / "ref.jsonl"
    rows.write_text(
        "".join(
            json.dumps({"age": 30 + i % 7, "plan": "pro" if i % 3 else "free"}) + "\n"
            for i in range(300)
        )
    )
    events = tmp_path / "events.jsonl"
    events.write_text(
        "\n".join(
            Prediction(
                model="churn",
                model_version="2",
                request_id=str(i),
                features={"age": i},
                prediction="yes",
            )
            .to_json()
            .decode()
            for i in range(50)
        )
    )
    code, out = run("drift", "reference", "set", "churn", "2", "--from", str(rows), "--json")
    assert code == 0, out
    assert json.loads(out) == {
        "model": "churn",
        "model_version": "2",
        "version": 1,
        "n": 300,
        "features": ["age", "plan"],
    }
    code, out = run("drift", "reference", "set", "churn", "2", "--from", str(events), "--json")
    assert code == 0, out
    assert json.loads(out)["version"] == 2
    assert json.loads(out)["features"] == ["age", "output.label"]
    shown = json.loads(run("drift", "reference", "show", "--json")[1])
    assert [(r["version"], r["n"], r["source"]) for r in shown] == [
        (2, 50, "file events.jsonl"),
        (1, 300, "file ref.jsonl"),
    ]
    assert "churn" in run("drift", "reference", "show")[1]


def test_reference_from_a_bad_file_names_the_line(env: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"age": 1}\nnot json\n')
    code, out = run("drift", "reference", "set", "m", "1", "--from", str(bad))
    assert code == 2 and "bad.jsonl:2: not JSON" in " ".join(out.split())
    code, out = run("drift", "reference", "set", "m", "1", "--from", str(tmp_path / "none.jsonl"))
    assert code == 2 and "no such file" in " ".join(out.split())


def test_status_and_metrics_show(env: Settings) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    with Session(create_engine_for(env)) as session:
        session.add(
            DriftStatusRow(
                model="churn",
                model_version="2",
                feature="age",
                test="ks",
                statistic=0.31,
                threshold=0.12,
                p_value=1e-9,
                drifted=True,
                state="drift",
                since=now,
                window_end=now,
                reference_version="v1 (first 1000 events)",
                n_current=400,
            )
        )
        session.add(
            DriftStatusRow(
                model="churn",
                model_version="2",
                feature="plan",
                test="chi_square",
                statistic=1.2,
                threshold=3.8,
                p_value=0.3,
                drifted=False,
                state="ok",
                window_end=now,
                reference_version="v1 (first 1000 events)",
                n_current=400,
            )
        )
        save_snapshot(
            session,
            MetricSnapshot(
                model="churn",
                model_version="2",
                window_start=now,
                window_end=now,
                count=400,
                feedback_count=200,
                labelled_count=150,
                correct_count=120,
                positive_count=30,
                judged_count=50,
                accuracy=0.8,
                feedback_rate=0.5,
                positive_rate=0.6,
            ),
        )
        save_snapshot(
            session,
            MetricSnapshot(
                model="churn",
                model_version="2",
                window_start=now,
                window_end=now,
                count=100,
                feedback_count=0,
                labelled_count=0,
                correct_count=0,
                positive_count=0,
                judged_count=0,
                experiment="pricing",
                variant="b",
                estimated_accuracy=0.9,
            ),
        )
        save_snapshot(
            session,
            MetricSnapshot(
                model="churn",
                model_version="2",
                window_start=now,
                window_end=now,
                count=7,
                feedback_count=0,
                labelled_count=0,
                correct_count=0,
                positive_count=0,
                judged_count=0,
                window="sliding",
            ),
        )
        session.commit()
    code, out = run("drift", "status")
    assert code == 0 and "1 of 2 features drifting" in out and "age" in out
    rows = json.loads(run("drift", "status", "--json")[1])
    assert [(r["feature"], r["state"]) for r in rows] == [("age", "drift"), ("plan", "ok")]
    snaps = json.loads(run("metrics", "show", "--json")[1])
    assert [(s["model"], s["accuracy"]) for s in snaps] == [("churn", 0.8)]
    assert "0.800" in run("metrics", "show")[1]
    assert "0.900" in run("metrics", "show", "--slices")[1]
    sliced = json.loads(run("metrics", "show", "--slices", "--json")[1])
    assert [(s["variant"], s["estimated_accuracy"]) for s in sliced] == [(None, None), ("b", 0.9)]
    sliding = json.loads(run("metrics", "show", "--window", "sliding", "--json")[1])
    assert [(s["count"], s["window"]) for s in sliding] == [(7, "sliding")]
    code, out = run("metrics", "show", "--window", "hopping")
    assert code == 2 and "--window must be tumbling or sliding" in out


@pytest.mark.integration
def test_reference_from_a_time_range_of_the_stream(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from datetime import timedelta

    from tests.kafka_helpers import produce

    now = datetime.now(UTC).replace(microsecond=0)
    events = [
        Prediction(
            model="ranker",
            model_version="4",
            request_id=f"r{i}",
            ts=now - timedelta(minutes=30 - i),
            features={"k": i},
            score=0.5,
        )
        for i in range(20)
    ]
    events.append(
        Prediction(
            model="other",
            model_version="4",
            request_id="x",
            ts=now - timedelta(minutes=20),
            features={"k": 1},
            score=0.5,
        )
    )
    produce(settings, "predictions", events)
    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    since = (now - timedelta(minutes=25)).strftime("%Y-%m-%dT%H:%M:%S")
    until = (now - timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%S")
    code, out = run(
        "drift", "reference", "set", "ranker", "4", "--since", since, "--until", until, "--json"
    )
    assert code == 0, out
    # the events whose own time lies in the range: 10 of the 20
    assert json.loads(out)["n"] == 10
    later = (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S")
    code, out = run("drift", "reference", "set", "ranker", "4", "--since", later)
    assert code == 2 and "no predictions" in out
    code, out = run("drift", "reference", "set", "ranker", "4")
    assert code == 2 and "either --from" in out
