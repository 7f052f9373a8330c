"""The grid's badges from a station's health report (station_agent/live_status.py): each problem once, in Russian,
with a code the page colours by; a healthy or idle station shows none."""

from __future__ import annotations

from station_agent.live_status import BACKLOG_AGE_S, warnings_of


def _report(**over: object) -> dict:
    report = {
        "cameras": [{"track": "cam0", "source": "synthetic", "state": "recording", "arriving": True, "frozen": False,
                     "frozen_for_s": 0, "black": False},
                    {"track": "cam1", "source": "synthetic", "state": "recording", "arriving": True, "frozen": False,
                     "frozen_for_s": 0, "black": False}],
        "microphone": {"source": "synthetic", "state": "recording", "arriving": True, "silent": False,
                       "silent_for_s": 0},
        "disk": {"free_mb": 9000, "reserve_mb": 500, "warning": False, "stop": False},
        "upload": {"queue": {"length": 3, "bytes": 1000, "oldest_age_s": 4.0, "failed": 0}},
    }
    report.update(over)
    return report


def test_a_healthy_or_idle_station_has_no_badges() -> None:
    assert warnings_of(_report()) == []
    idle = _report(cameras=[{"source": "synthetic", "state": "idle"}], microphone={"state": "idle"})
    assert warnings_of(idle) == []


def test_each_problem_is_one_badge() -> None:
    report = _report()
    report["cameras"][1].update(frozen=True, frozen_for_s=7.5)
    report["microphone"].update(silent=True, silent_for_s=31)
    report["disk"].update(free_mb=800, warning=True)
    report["upload"]["queue"].update(length=40, bytes=300 * 2**20, oldest_age_s=BACKLOG_AGE_S + 60, failed=2)
    badges = warnings_of(report)
    assert [b["code"] for b in badges] == ["camera_frozen", "mic_silent", "disk_low", "upload_backlog",
                                           "upload_failed"]
    assert badges[0]["text"] == "Камера cam1: изображение застыло (7.5 с)"
    assert badges[1]["text"] == "Микрофон: тишина (31 с)"
    assert badges[2]["text"] == "Диск: осталось 800 МБ"
    assert badges[3]["text"] == "Выгрузка отстаёт: 40 фрагм., 300 МБ, ждёт 180 с"


def test_worse_states_replace_milder_ones() -> None:
    report = _report()
    report["cameras"][0].update(arriving=False, frozen=True)
    report["microphone"].update(arriving=False, silent=True)
    report["disk"].update(free_mb=100, warning=True, stop=True)
    assert [b["code"] for b in warnings_of(report)] == ["camera_lost", "mic_lost", "disk_full"]
