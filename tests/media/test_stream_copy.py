"""An H.264 network camera recorded by stream copy: no decode, no re-encode, still on the shared clock."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time

from media.calibration import LiveRoom, ffmpeg_exe
from media.manifest import read_manifest, verify_recording
from tests.media.conftest import decode_errors, free_udp_port, osce, sync_check, udp_camera_url
from tests.media.test_faults import assert_intact


def probe_frames(folder, track="cam0"):
    manifest = read_manifest(folder)
    data = b"".join((folder / f.file).read_bytes() for f in manifest.track_files(track))
    result = subprocess.run([ffmpeg_exe(), "-i", "pipe:0", "-map", "0:v", "-c", "copy", "-f", "null", "-"],
                            input=data, capture_output=True, timeout=60)
    tail = result.stderr.decode(errors="replace")
    return int(tail.rsplit("frame=", 1)[1].split()[0])


def test_stream_copy_camera_with_pulse_microphone(tmp_path, pulse_microphone):
    port = free_udp_port()
    out = tmp_path / "rec"
    with LiveRoom(f"udp://127.0.0.1:{port}?pkt_size=1316", "room", width=640, height=360):
        time.sleep(3.0)  # the sound server settles its buffer for a new player in its first seconds
        result = osce("record", "--video", "copy:" + udp_camera_url(port), "--audio", pulse_microphone,
                      "--seconds", "8", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    header = read_manifest(out).header
    assert header["tracks"][0]["video"]["copy"] is True
    assert (header["tracks"][0]["video"]["width"], header["tracks"][0]["video"]["height"]) == (640, 360)
    if report["stats"]["cam0"]["damaged_packets"] == 0:
        assert_intact(out)  # nothing lost on the way: the copy decodes without an error
    else:  # UDP lost datagrams on a busy machine: the recording says so (the test below makes this happen)
        assert verify_recording(out) == []
        assert any(e.get("event") == "source_damaged" for e in read_manifest(out).events)
    # 8 s at 25 fps, less what comes before the first keyframe (the generator sends one a second).
    assert 8 * 25 - 30 <= probe_frames(out) <= 8 * 25 + 5, report
    cam = sync_check(out)["tracks"]["cam0"]
    assert cam["pairs"] >= 6 and cam["spread_ms"] <= 20, cam


class LossyRelay:
    """A UDP hop that loses every `every`-th datagram, as a congested network switch would."""

    def __init__(self, to_port: int, every: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.to, self.every, self.lost = ("127.0.0.1", to_port), every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            n = 0
            while not self._stop.is_set():
                try:
                    data = self.sock.recv(65536)
                except TimeoutError:
                    continue
                n += 1
                if n % self.every == 0:
                    self.lost += 1
                else:
                    out.sendto(data, self.to)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def test_packets_lost_on_the_network_are_counted_and_noted_where(tmp_path):
    port = free_udp_port()
    relay = LossyRelay(port, every=31)
    sender = subprocess.Popen([ffmpeg_exe(), "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
                               "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "25",
                               "-f", "mpegts", f"udp://127.0.0.1:{relay.port}?pkt_size=1316"],
                              stdin=subprocess.DEVNULL)
    out = tmp_path / "rec"
    try:
        result = osce("record", "--video", "copy:" + udp_camera_url(port), "--seconds", "6", "--out", str(out))
    finally:
        sender.terminate()
        sender.wait(timeout=10)
        relay.close()
    assert result.returncode == 0, result.stderr[-2000:]
    assert relay.lost >= 3, relay.lost
    damaged = json.loads(result.stdout)["stats"]["cam0"]["damaged_packets"]
    assert damaged > 0, (damaged, relay.lost)
    manifest = read_manifest(out)
    noted = [e for e in manifest.events if e.get("event") == "source_damaged"]
    assert noted and noted[0]["track"] == "cam0" and noted[0]["damaged_packets"] >= 1, manifest.events
    assert verify_recording(out) == []  # what arrived is recorded and intact on disk
    assert decode_errors(out, "cam0") != ""  # the loss is real in the picture, and now also on record
