"""Ownership and scope: a station acts only on the attempts the exam day's schedule gave it. A stolen room-PC
token names an attempt that is not its own (another room's, or one the schedule does not hold yet) on every way
a station writes: marks, fragments by PUT and by tus, CPR reports, health events. Each must be refused before
anything is created (no attempt row, no recording, no stored bytes, no upload, no event), so the rightful room is
never locked out of its own attempt. Each case uses fresh stations of its own."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from sqlalchemy import func, select

from .conftest import Stand, encode_fmp4, mark_event, tus_metadata

CATEGORY = "ownership and scope"

TUS = {"Tus-Resumable": "1.0.0"}
REPORT = {"format": "osce-cpr-figures/1", "checklist": "01_basic_cpr_adult", "manikin": None, "alignment": None,
          "video": {"estimate": False}, "items": {}}


def attempt_exists(stand: Stand, attempt: str) -> bool:
    from review_server.models import Attempt

    return stand.db(lambda s: s.get(Attempt, attempt) is not None)


def stored(stand: Stand, data: bytes) -> bool:
    sha = hashlib.sha256(data).hexdigest()
    return (stand.media_dir / sha[:2] / sha[2:4] / sha).exists()


def fresh_parts() -> list[bytes]:
    return encode_fmp4(shade=int(uuid.uuid4().int % 200))


def test_a_station_cannot_claim_another_rooms_attempt_before_that_room_does(stand: Stand, new_station: Any) -> None:
    """st1 posts a mark for st3's attempt before st3 has sent anything (the server's exam clock lists it for st3,
    the day is not imported yet). Then st3's own marks must still be taken once the day is imported."""
    thief, _, _ = new_station()
    owner, _, _ = new_station()
    attempt = f"att-{owner}"
    reply = stand.post_marks(thief, [mark_event(attempt, thief, 1)])
    assert reply.status == 409, (reply.status, reply.body[:300])
    assert reply.json()["where"] == "events[0].attempt_id"
    assert not attempt_exists(stand, attempt)  # nothing created: the attempt is still free for its room
    stand.schedule(owner, attempt)
    mine = stand.post_marks(owner, [mark_event(attempt, owner, 1)])
    assert mine.status == 200, mine.body
    again = stand.post_marks(thief, [mark_event(attempt, thief, 2)])
    assert again.status == 409 and "another station" in again.error
    marks = stand.request("GET", f"/api/attempts/{attempt}/marks", stand.user("archivist")).json()["events"]
    assert [m["source"] for m in marks] == [f"station:{owner}"]


def test_a_fragment_for_an_attempt_not_on_the_schedule_stores_nothing(stand: Stand, new_station: Any) -> None:
    code, _, _ = new_station()
    attempt, key = f"att-unscheduled-{code}", f"rec-{code}"
    media = fresh_parts()[1]  # pictures of its own: bytes the server has never seen
    reply = stand.put_fragment(code, key, "cam0", 1, media, attempt)
    assert reply.status == 409, (reply.status, reply.body[:300])
    assert reply.json()["where"] == "query attempt_id"
    assert not attempt_exists(stand, attempt) and not stored(stand, media)
    assert stand.request("GET", f"/api/recordings/{key}", stand.user("observer")).status == 404


def test_a_tus_upload_naming_an_attempt_not_on_the_schedule_is_not_opened(stand: Stand, new_station: Any) -> None:
    code, _, _ = new_station()
    attempt, key = f"att-unscheduled-{code}", f"rec-{code}"
    media = fresh_parts()[1]
    meta = tus_metadata(sha256=hashlib.sha256(media).hexdigest(), recording=key, track="cam0", seq="1",
                        kind="media", attempt_id=attempt)
    uploads = stand.media_dir / ".tus"
    before = set(uploads.glob("*.json"))
    made = stand.request("POST", "/api/tus", {**stand.station(code), **TUS, "Upload-Length": str(len(media)),
                                              "Upload-Metadata": meta})
    assert made.status == 409, (made.status, made.body[:300])
    assert "Location" not in made.headers and set(uploads.glob("*.json")) == before  # no upload opened
    assert not attempt_exists(stand, attempt) and not stored(stand, media)


def test_cpr_figures_for_an_attempt_not_on_the_schedule_create_nothing(stand: Stand, new_station: Any) -> None:
    code, _, _ = new_station()
    attempt = f"att-unscheduled-{code}"
    reply = stand.request("PUT", f"/api/attempts/{attempt}/cpr-figures",
                          {**stand.station(code), "Content-Type": "application/json"}, json.dumps(REPORT).encode())
    assert reply.status == 409, (reply.status, reply.body[:300])
    assert not attempt_exists(stand, attempt)


def test_a_health_event_cannot_be_pinned_on_another_rooms_attempt(stand: Stand, new_station: Any) -> None:
    """A station's 'camera frozen' placed on another room's attempt, where it would explain away that room's
    recording on the review page and in the export."""
    from review_server.models import HealthEvent

    thief, _, _ = new_station()
    owner, _, _ = new_station()
    attempt = f"att-{owner}"
    stand.schedule(owner, attempt)
    event = {"id": f"h-{uuid.uuid4().hex[:8]}", "code": "camera_frozen", "text": "Камера cam0: изображение застыло",
             "attempt_id": attempt, "started_at": "2026-06-01T09:01:00Z", "ended_at": "2026-06-01T09:05:00Z"}
    reply = stand.json_request("PUT", f"/api/stations/{thief}/health-events", {"events": [event]},
                               stand.station(thief))
    assert reply.status == 409, (reply.status, reply.body[:300])
    assert reply.json()["where"] == "events[0].attempt_id"
    count = stand.db(lambda s: s.scalar(select(func.count()).select_from(HealthEvent)
                                        .where(HealthEvent.attempt_id == attempt)))
    assert count == 0
    # The control: the same event sent by the owner is taken.
    mine = stand.json_request("PUT", f"/api/stations/{owner}/health-events", {"events": [event]}, stand.station(owner))
    assert mine.status == 200 and mine.json()["new"] == 1
