"""Worker settings: per-queue concurrency from code, CONVEYOR_QUEUES and --queues."""

from __future__ import annotations

import pytest

from conveyor import EventSettings, WorkerSettings
from conveyor.errors import InvalidInput
from conveyor.settings import parse_queues

SEEDS = "email-sender:5,pdf-processing:2,csv-export:1,thumbnails:4"


def test_a_queue_list_with_counts_gives_each_its_own_slots() -> None:
    names, counts = parse_queues(SEEDS + ",default")
    settings = WorkerSettings(queues=names, queue_concurrency=counts, concurrency=3)
    assert settings.pools == [
        (("email-sender",), 5),
        (("pdf-processing",), 2),
        (("csv-export",), 1),
        (("thumbnails",), 4),
        (("default",), 3),
    ]
    assert settings.slots == 15


def test_queues_without_counts_share_the_concurrency() -> None:
    names, counts = parse_queues("a, b ,c:2")
    assert (names, counts) == (("a", "b", "c"), {"c": 2})
    settings = WorkerSettings(queues=names, queue_concurrency=counts, concurrency=4)
    assert settings.pools == [(("c",), 2), (("a", "b"), 4)]
    assert WorkerSettings(queues=("a", "b")).pools == [(("a", "b"), 10)]


def test_a_name_ending_in_digits_after_a_colon_takes_an_explicit_count() -> None:
    assert parse_queues("v:2:1,host:port") == (("v:2", "host:port"), {"v:2": 1})


def test_conveyor_queues_sets_counts_and_a_queues_flag_replaces_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONVEYOR_QUEUES", SEEDS)
    from_env = WorkerSettings.from_env()
    assert from_env.queue_concurrency == {
        "email-sender": 5,
        "pdf-processing": 2,
        "csv-export": 1,
        "thumbnails": 4,
    }
    assert from_env.slots == 12
    flag = WorkerSettings.from_env(queues=("other",), queue_concurrency={})
    assert (flag.queues, flag.queue_concurrency) == (("other",), {})


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"enabled": "yes"}, "enabled"),
        ({"stats": 1}, "stats"),
        ({"max_count": 0}, "max_count"),
        ({"max_age_s": 0}, "max_age_s"),
        ({"stats_max_age_s": -1}, "stats_max_age_s"),
    ],
)
def test_bad_event_settings_name_their_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput, match=field):
        EventSettings(**kwargs)  # type: ignore[arg-type]
