"""The RTSP camera stand-in's server: GStreamer's reference RTSP server (GstRtspServer), run by the system Python
(`/usr/bin/python3`, where Debian's `gi` lives). Started and driven by media/rtsp_server.py; do not import it.

    /usr/bin/python3 media/rtsp_server_gst.py '{"port": 8554, "mounts": {"main": {...}}}'

Each mount is one camera stream, built as a camera builds it: a live picture with a clock drawn on it (or a
stimulus file played in real time), encoded to H.264 or H.265 and sent as RTP, plus the camera's microphone
(G.711 A-law or µ-law at 8 kHz, AAC at 16 kHz, Opus at 48 kHz) in the same session. A mount is shared: every
client gets the same encoder's output, as from a camera. RTSP over TCP (interleaved) and over UDP both work.

Mount keys: video ("h264" | "h265" | "mjpeg"), width, height, fps, bitrate_kbps, key_int (frames), audio ("alaw" |
"mulaw" | "aac" | "opus" | null), sound ("tone": 440 Hz, the default; "ticks": a click a second), stimulus (a
media file to serve instead of the test picture and sound: its audio is kept as PCM until the camera's encoder),
drop_every (lose every N-th video RTP packet before it leaves). Server keys: address (127.0.0.1), port, user and
password (basic authentication for every mount, as a camera has one login).

Commands on stdin, one JSON object a line: {"cmd": "audio", "mount": "main", "on": false} stops (or restarts) a
mount's audio packets while its video goes on. "ready" is printed on stdout when the server listens.
"""

from __future__ import annotations

import json
import sys
import threading

import gi  # type: ignore[import-not-found]  # Debian's python3-gi, in the system Python only

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # type: ignore[import-not-found]  # noqa: E402

AUDIO = {  # sample rate, encoder, payloader (G.711 in 20 ms packets, as cameras send it)
    "alaw": (8000, "alawenc", "rtppcmapay pt=8 min-ptime=20000000 max-ptime=20000000"),
    "mulaw": (8000, "mulawenc", "rtppcmupay pt=0 min-ptime=20000000 max-ptime=20000000"),
    "aac": (16000, "avenc_aac", "rtpmp4gpay pt=97"),
    "opus": (48000, "opusenc", "rtpopuspay pt=98"),
}


# A camera sends each picture a fixed time after it took it (its encoder is hardware). Software encoders on a
# shared test machine take anything from 5 to 100 ms: each packet waits until its capture time plus this
# before it leaves, so the stand-in's delivery is as steady as a camera's (the recorder's timing is under test,
# not x264's scheduling).
SEND_DELAY = "clocksync ts-offset=120000000"


def video_encoder(m: dict) -> str:
    """As a camera encodes: one slice per picture, closed picture groups (IDR key frames), no B-frames, the
    parameter sets repeated before every key frame."""
    kbps, key = int(m.get("bitrate_kbps", 1500)), int(m.get("key_int", 50))
    if m.get("video") == "mjpeg":  # older cameras: every picture a JPEG
        return f"jpegenc quality=85 ! {SEND_DELAY} ! rtpjpegpay name=pay0 pt=26"
    if m.get("video", "h264") == "h265":
        return (f"x265enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max={key} "
                f"option-string=\"open-gop=0:repeat-headers=1\" ! {SEND_DELAY} ! rtph265pay name=pay0 pt=96")
    return (f"x264enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max={key} "
            f"sliced-threads=false threads=1 ! {SEND_DELAY} ! rtph264pay name=pay0 pt=96 config-interval=-1")


def audio_branch(m: dict, source: str) -> str:
    rate, encoder, payloader = AUDIO[m["audio"]]
    return (f"{source} ! audioconvert ! audioresample ! audio/x-raw,rate={rate},channels=1 ! valve name=audio_valve "
            f"! {encoder} ! {SEND_DELAY} ! {payloader} name=pay1")


def launch(m: dict) -> str:
    size = f"width={int(m.get('width', 640))},height={int(m.get('height', 360))}"
    rate = f"framerate={int(m.get('fps', 25))}/1"
    if m.get("stimulus"):
        # uridecodebin plays the file at its own pace against the pipeline clock, like a live camera.
        parts = [f"uridecodebin uri=file://{m['stimulus']} name=src",
                 f"src. ! queue ! videoconvert ! videoscale ! videorate ! video/x-raw,{size},{rate},format=I420 "
                 f"! {video_encoder(m)}"]
        if m.get("audio"):
            parts.append(audio_branch(m, "src. ! queue"))
    else:
        parts = [f"videotestsrc is-live=true pattern=smpte ! video/x-raw,{size},{rate} "
                 f"! timeoverlay font-desc=\"Sans 20\" ! videoconvert ! video/x-raw,format=I420 ! {video_encoder(m)}"]
        if m.get("audio"):
            block = int(AUDIO[m["audio"]][0]) // 50  # the microphone delivers 20 ms blocks
            wave = "ticks volume=0.5" if m.get("sound") == "ticks" else "sine freq=440 volume=0.2"
            parts.append(audio_branch(m, f"audiotestsrc is-live=true wave={wave} samplesperbuffer={block}"))
    return "( " + " ".join(parts) + " )"


class Server:
    def __init__(self, config: dict) -> None:
        self.config = config
        self.media: dict[str, GstRtspServer.RTSPMedia] = {}
        self.server = GstRtspServer.RTSPServer()
        self.server.set_address(config.get("address", "127.0.0.1"))
        self.server.set_service(str(config["port"]))
        auth = None
        if config.get("user"):
            auth = GstRtspServer.RTSPAuth()
            token = GstRtspServer.RTSPToken()
            token.set_string("media.factory.role", "camera-user")
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(config["user"], config.get("password", "")), token)
            self.server.set_auth(auth)
        mounts = self.server.get_mount_points()
        for name, m in config["mounts"].items():
            factory = GstRtspServer.RTSPMediaFactory()
            factory.set_launch(launch(m))
            factory.set_shared(True)
            if auth is not None:
                role = Gst.Structure.new_from_string(
                    "camera-user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")
                factory.add_role_from_structure(role)
            factory.connect("media-configure", self._configured, name)
            mounts.add_factory("/" + name, factory)

    def _configured(self, _factory, media: GstRtspServer.RTSPMedia, name: str) -> None:
        self.media[name] = media
        every = int(self.config["mounts"][name].get("drop_every", 0))
        if every > 0:
            pay = media.get_element().get_by_name("pay0")
            count = [0]

            def drop(_pad, _info) -> Gst.PadProbeReturn:  # noqa: ANN001
                count[0] += 1
                return Gst.PadProbeReturn.DROP if count[0] % every == 0 else Gst.PadProbeReturn.OK

            pay.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, drop)

    def command(self, cmd: dict) -> None:
        if cmd.get("cmd") == "audio":
            media = self.media.get(cmd["mount"])
            valve = media.get_element().get_by_name("audio_valve") if media is not None else None
            if valve is not None:
                valve.set_property("drop", not cmd.get("on", True))


def main() -> None:
    Gst.init(None)
    config = json.loads(sys.argv[1])
    server = Server(config)
    if server.server.attach(None) == 0:
        print(f"cannot listen on port {config['port']}", file=sys.stderr, flush=True)
        sys.exit(2)
    loop = GLib.MainLoop()

    def read_commands() -> None:
        for line in sys.stdin:
            if line.strip():
                GLib.idle_add(server.command, json.loads(line))
        GLib.idle_add(loop.quit)  # stdin closed: the controller is gone

    threading.Thread(target=read_commands, daemon=True).start()
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
