"""A schedule runs the real drift check end to end: `batchlane monitor baseline` on finance complaints, then a
`NOW` schedule over in-distribution complaints (Completed, no alert) and one over everyday English (the seed's
"Thanks so much for driving me home": CompletedWithViolations, and the webhook gets the report).

Needs `batchlane monitor baseline` and `batchlane monitor run` (docs/monitoring.md) and the MiniLM embeddings
model they load by default.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchlane.cli.main import main
from batchlane.monitor.schedule_records import ExecutionStatus, Target
from batchlane.monitor.scheduler import Scheduler
from batchlane.monitor.schedules import ScheduleStore
from tests.monitor.webhook import webhook_server

pytestmark = [pytest.mark.slow]

PRODUCTS = ["credit card", "mortgage", "checking account", "student loan", "car loan", "savings account"]
PROBLEMS = [
    "I was charged a late fee even though my {p} payment was on time",
    "The bank reported my {p} as delinquent to the credit bureaus by mistake",
    "My {p} statement shows a charge I never authorized",
    "The servicer of my {p} keeps adding interest I do not owe",
    "I disputed an error on my {p} and the company never answered",
    "Collectors call me every day about a {p} debt that is not mine",
    "They closed my {p} without notice and kept my money",
]
EVERYDAY = [
    "Thanks so much for driving me home",
    "The weather is lovely today, let's go to the beach",
    "My cat loves sleeping in the sun by the window",
    "We baked a chocolate cake for grandma's birthday",
    "The football match last night went into extra time",
    "I planted tomatoes and basil in the garden this spring",
]


def complaints(skip: int = 0) -> list[str]:
    texts = [problem.format(p=product) for problem in PROBLEMS for product in PRODUCTS]
    return texts[skip:] + texts[:skip]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("baseline")
    train = folder / "train.jsonl"
    train.write_text("".join(json.dumps({"text": text}) + "\n" for text in complaints()))
    with pytest.raises(SystemExit) as info:
        main(
            [
                "monitor",
                "baseline",
                "--data",
                str(train),
                "--output",
                str(folder / "out"),
                "--max-length",
                "64",
            ]
        )
    assert info.value.code in (0, None)
    return folder / "out"


def run_once(tmp_path: Path, baseline: Path, texts: list[str], webhook: str) -> object:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"text": text}) + "\n" for text in texts))
    store = ScheduleStore(tmp_path / "jobs.db")
    try:
        target = Target(
            baseline=str(baseline), data=(str(data),), output=str(tmp_path / "reports"), webhook=webhook
        )
        store.create("nlp-drift", "NOW", target)
        [done] = Scheduler(store).tick(wait=True)
        return done
    finally:
        store.close()


def test_in_distribution_data_completes_without_an_alert(baseline: Path, tmp_path: Path) -> None:
    with webhook_server() as hook:
        done = run_once(tmp_path, baseline, complaints(skip=5)[:12], hook.url)
    assert done.status is ExecutionStatus.COMPLETED, done.failure_reason
    assert json.loads(Path(done.violations_uri).read_text())["violations"] == []
    assert hook.bodies == []


def test_shifted_data_alerts_the_webhook_with_the_report(baseline: Path, tmp_path: Path) -> None:
    with webhook_server() as hook:
        done = run_once(tmp_path, baseline, EVERYDAY, hook.url)
        assert done.status is ExecutionStatus.COMPLETED_WITH_VIOLATIONS, done.failure_reason
        [body] = hook.bodies
    assert done.alert == "webhook: 200"
    flagged = {violation["sentence"] for violation in body["violations"]}
    assert "Thanks so much for driving me home" in flagged
    assert {v["feature_name"] for v in body["violations"]} == {"sent_cosine_score"}
    assert body["report"] == json.loads(Path(done.violations_uri).read_text())
    assert body["summary"] == json.loads(Path(done.summary_uri).read_text())
