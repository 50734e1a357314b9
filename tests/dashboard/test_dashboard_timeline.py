"""Round timelines: each selected client's download, evaluation, training and upload laid out
from the round's opening, with dropped and late clients told apart."""
from datetime import datetime, timedelta, timezone

from dashboard.timeline import EventRow, UpdateRow, round_lanes

OPENED = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
ROUND = 7


def at(seconds: float) -> datetime:
    return OPENED + timedelta(seconds=seconds)


def selected(client_id: int, t: float = 0.0) -> EventRow:
    return EventRow(client_id, "training", at(t), "selected for round 1", ROUND)


def lanes(*, events, updates=(), expected=(), closed=None, status="open"):
    return round_lanes(
        round_id=ROUND, opened_at=OPENED, closed_at=closed, status=status, expected=set(expected),
        names={1: "alpha", 2: "beta", 3: "gamma"}, events=list(events), updates=list(updates),
    )


def test_a_delivered_update_is_laid_out_as_download_eval_train_then_upload():
    (lane,) = lanes(
        events=[selected(1)], expected=[1],
        updates=[UpdateRow(1, at(10.0), {"download_seconds": 1.0, "eval_seconds": 0.5, "train_seconds": 6.0})],
    )
    assert lane["outcome"] == "delivered" and lane["end"] == 10.0
    assert [(s["kind"], s["start"], s["end"]) for s in lane["segments"]] == [
        ("download", 0.0, 1.0), ("eval", 1.0, 1.5), ("train", 1.5, 7.5), ("upload", 7.5, 10.0),
    ]


def test_device_durations_longer_than_what_the_server_saw_are_scaled_to_fit():
    (lane,) = lanes(events=[selected(1)],
                    updates=[UpdateRow(1, at(4.0), {"download_seconds": 2.0, "train_seconds": 6.0})])
    assert lane["segments"][-1]["end"] == 4.0
    assert [s["kind"] for s in lane["segments"]] == ["download", "train"]


def test_an_update_without_timings_is_one_block_of_work():
    (lane,) = lanes(events=[selected(1)], updates=[UpdateRow(1, at(3.0), {})])
    assert lane["segments"] == [{"kind": "work", "start": 0.0, "end": 3.0}]


def test_a_client_paused_mid_round_ends_at_its_pause_and_keeps_its_lane():
    # The server drops a paused client from the round's expected set; its selection remains.
    (lane,) = lanes(events=[selected(2), EventRow(2, "paused", at(2.5), "paused by operator")], expected=[])
    assert (lane["name"], lane["outcome"], lane["end"]) == ("beta", "paused", 2.5)
    assert lane["events"] == [{"t": 2.5, "status": "paused", "reason": "paused by operator"}]


def test_a_client_still_working_in_an_open_round_has_no_end_yet():
    (lane,) = lanes(events=[selected(3, 0.01)], expected=[3])
    assert (lane["outcome"], lane["end"], lane["start"]) == ("working", None, 0.01)


def test_a_client_that_never_delivered_before_the_round_closed_missed_it():
    working, delivered = lanes(
        events=[selected(1), selected(2)], expected=[1, 2], closed=at(30.0), status="closed",
        updates=[UpdateRow(2, at(8.0), {"train_seconds": 5.0})],
    )
    assert (working["client"], working["outcome"], working["end"]) == (1, "missed", 30.0)
    assert delivered["outcome"] == "delivered"


def test_events_of_other_rounds_and_after_the_close_are_left_out():
    (lane,) = lanes(
        events=[EventRow(1, "training", at(-50), "selected for round 0", ROUND - 1), selected(1),
                EventRow(1, "ready", at(40), "idle")],
        expected=[1], closed=at(30.0), status="closed", updates=[UpdateRow(1, at(9.0), {})],
    )
    assert lane["events"] == [] and lane["start"] == 0.0
