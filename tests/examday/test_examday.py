"""The exam day simulation, short enough for CI: 3 stations, 3 candidates, one fault of each kind (agent
kill -9, server kill -9, network cut, frozen camera, silent microphone, full disk, a station's clock stepped).
The long run with the README's figures is `bench/examday.py`."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.harness.examday import Plan, simulate, table


@pytest.mark.timeout(600)
async def test_an_exam_day_under_faults_loses_nothing(tmp_path: Path) -> None:
    result = await simulate(tmp_path, Plan(stations=3, candidates=3, reading_s=4, performing_s=14, changeover_s=6,
                                           start_in_s=14, rtsp_stations=1))
    print(table(result))
    assert result["fragments_local"] > 0 and result["marks_acknowledged"] > 0
    assert result["fragments_lost"] == 0 and result["bytes_lost"] == 0, result
    assert result["marks_lost"] == 0 and result["mark_duplicates"] == 0, result
    assert result["marks_misplaced_count"] == 0, result["marks_misplaced"]
    assert result["clock_steps_taken_up"] and all(result["clock_steps_taken_up"].values()), result
    assert result["attempts_off_duration"] == {}, result["attempts_off_duration"]
    assert result["protocol_wrong"] == {} and result["attempts_scored"] == result["attempts"], result
    assert result["export_verified"], result["verify_output"]
    # Station 1 filmed with a real RTSP camera: H.265 by stream copy, its own microphone as the sound.
    assert result["rtsp_stations"]["st1"]["codecs"] == ["hevc"], result["rtsp_stations"]
    assert result["rtsp_stations"]["st1"]["audio"] == ["camera:0"], result["rtsp_stations"]
    by_kind = {f["kind"]: f for f in result["faults"]}
    assert set(by_kind) == {"agent_kill", "server_kill", "network_cut", "camera_freeze", "mic_silent", "disk_full",
                            "clock_step"}
    for kind in ("agent_kill", "server_kill", "network_cut"):
        assert by_kind[kind]["recovered_s"] is not None and by_kind[kind]["recovered_s"] < 20, by_kind[kind]
    for kind in ("camera_freeze", "mic_silent", "disk_full"):
        assert by_kind[kind]["detected_s"] is not None, by_kind[kind]  # the health report said so
