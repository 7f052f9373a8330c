"""The station agent's configuration: one TOML file, defaults that run the demo, secrets from outside it.

Every key is declared once below, on the `AgentConfig` field it fills (`media.configspec`); the loader, its error
messages and the reference `station_agent/CONFIG.md` (`python -m station_agent.config > station_agent/CONFIG.md`)
are made from the declarations. Every key is optional; without a file the agent records synthetic cameras and a
synthetic microphone into ./agent-data and talks to no server. Relative paths are taken from the file's folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from checklists.examiner_keys import MIN_PIN_DIGITS, PIN_RE
from checklists.loader import DATA_DIR
from media.configspec import ConfigError, ConfigSpec, Source, derived, setting
from media.recorder import SourceConfig
from media.sources import SourceError
from media.sources.spec import camera_audio_index, is_rtsp

__all__ = ["AgentConfig", "CameraConfig", "ConfigError", "SECTIONS", "SPEC", "load_config", "parse_pins"]

DEFAULT_TOKEN_ENV = "OSCE_STATION_TOKEN"
PINS_ENV = "OSCE_MARKING_PINS"


@dataclass
class CameraConfig(SourceConfig):
    """One `[[cameras]]` table: a video source for the recorder."""

    spec: str = setting("source", help='a source spec, as for `osce record --video`: "synthetic", "/dev/video0", '
                        '"rtsp://…" (H.264 and H.265 recorded by stream copy, anything else decoded), '
                        '"copy:rtsp://…", "decode:rtsp://…"; a password in the URL is masked wherever it is shown')
    latency_ms: float = setting("latency_ms", 0.0, "the camera's capture-to-delivery delay, measured by calibration "
                                "(`osce sync-check`)")
    transport: str = setting("transport", "tcp", "an RTSP camera's transport: tcp (interleaved in the RTSP "
                             "connection: through any switch and firewall) or udp", choices=("tcp", "udp"))
    user: str | None = setting("user", None, "an RTSP camera's login, when it is not in the URL")
    password: str | None = derived(None, repr=False)  # from password_file
    live_url: str | None = setting("sub_stream", None, "the camera's sub-stream (rtsp://…, H.264) for the "
                                   "observation room, sent on by stream copy; none: the recorded stream",
                                   pattern=r"^rtsps?://", pattern_help="an rtsp:// URL")
    password_file: Path | None = setting("password_file", None, "a file whose first line is that login's password "
                                         "(never the password in this file)", must_exist=True)


@dataclass
class AgentConfig:
    file: str = derived("<defaults>")  # the file read, for messages
    station_id: str = setting("station.id", "station-1", "the station's id, as the server and the schedule know it",
                              pattern=r"^[0-9A-Za-z][0-9A-Za-z_-]{0,63}\Z",  # \Z: "$" would let a trailing newline in
                              pattern_help="letters, digits, '-' or '_' (up to 64)")
    station_name: str = setting("station.name", "Станция 1", "burned into synthetic pictures, shown on pages")
    server_url: str | None = setting("server.url", None, "the review server; none: no schedule fetch, no upload",
                                     pattern=r"^https?://[^/\s]+", pattern_help="an http:// or https:// URL")
    token_env: str = setting("server.token_env", DEFAULT_TOKEN_ENV, "the station token comes from this variable ...")
    token_file: Path | None = setting("server.token_file", None, "... or from this file; never from this file's text")
    token: str | None = derived(None, repr=False)  # from token_file or $token_env
    upload_bandwidth_kbps: int = setting("server.upload_bandwidth_kbps", 0, "upload cap; 0: no cap", minimum=0)
    cameras: list[CameraConfig] = setting("cameras", help="One table per camera, in order (camera 0 first).",
                                          default_factory=lambda: [CameraConfig("synthetic")],
                                          shown_default='one `source = "synthetic"`')
    microphone_source: str = setting("microphone.source", "synthetic",
                                     'a source spec, as for `osce record --audio`; "camera:N": the sound of camera '
                                     'N\'s RTSP session (its built-in microphone); "none" or "": no sound')
    microphone_latency_ms: float = setting("microphone.latency_ms", 0.0, "the microphone's delay beyond what "
                                           "PortAudio reports")
    width: int = setting("video.width", 1280, "picture width of every camera", minimum=16)
    height: int = setting("video.height", 720, "picture height", minimum=16)
    fps: float = setting("video.fps", 25.0, "pictures per second", minimum=1)
    data_dir: Path = setting("storage.data_dir", Path("agent-data"), "recordings, the marks journal, the queue")
    reserve_mb: int = setting("storage.reserve_mb", 500, "recording stops cleanly at this much free space; a "
                              "warning from twice this", minimum=0)
    delete_after_upload: bool = setting("storage.delete_after_upload", False, "delete a part's files once the "
                                        "server has them all")
    checklist: Path = setting("exam.checklist", DATA_DIR / "01_basic_cpr_adult.yaml", "the station's checklist "
                              "(checklists/FORMAT.md)", must_exist=True,
                              shown_default="`checklists/data/01_basic_cpr_adult.yaml` (bundled)")
    pins_file: Path | None = setting("exam.pins_file", None, f"without a server only: lines login:PIN (else "
                                     f"${PINS_ENV}), 6 to 12 digits; with a server, examiners sign in with the PINs it "
                                     "issues", must_exist=True)
    pins: dict[str, str] = derived(default_factory=dict, repr=False)  # examiner login -> PIN
    marking: bool | None = setting("exam.marking", None, "serve the tablet marking page (with a server: examiners "
                                   "sign in with the PINs it issued, from the station's roster; without one: "
                                   "`pins_file`); none: on when PINs are given", shown_default="on when PINs are given")
    marking_port: int = setting("exam.marking_port", 8081, "the tablet marking page of the current attempt; 0: any "
                                "free port", minimum=0, maximum=65535)
    schedule_file: Path | None = setting("exam.schedule_file", None, "a local schedule, until the server provides one")
    warn_before_end_s: float = setting("exam.warn_before_end_s", 60.0, 'the "one minute left" cue', minimum=0)
    host: str = setting("http.host", "127.0.0.1", "address of the agent's status page and API")
    port: int = setting("http.port", 8090, "its port", minimum=0, maximum=65535)
    frozen_s: float = setting("health.frozen_s", 3.0, "a picture unchanged this long is reported frozen", minimum=0.5)
    silence_s: float = setting("health.silence_s", 30.0, "sound under silence_dbfs this long is reported silent",
                               minimum=0.5)
    silence_dbfs: float = setting("health.silence_dbfs", -60.0, "the level under which sound counts as silence")
    cpr_analysis: bool = setting("cpr.analysis", False, "CPR figures from the camera after each attempt, sent to the "
                                 "server")
    cpr_camera: int = setting("cpr.camera", 0, "which [[cameras]] entry (from 0) sees the manikin's chest", minimum=0)
    cpr_live: bool = setting("cpr.live", True, "rolling figures to the observation room while the attempt runs")
    cpr_live_fps: float = setting("cpr.live_fps", 10.0, "pictures per second the live analyser looks at (160 px "
                                  "grey)", minimum=2)
    cpr_roi: tuple[float, float, float, float] | None = setting(
        "cpr.roi", None, "the chest as [x, y, w, h] fractions of the picture; none: found in the picture")
    cpr_manikin_dir: Path | None = setting("cpr.manikin_dir", None, "where the manikin's export file appears "
                                           "(media/cpr/FORMATS.md)")
    cpr_manikin_wait_s: float = setting("cpr.manikin_wait_s", 300.0, "how long after an attempt its manikin file is "
                                        "waited for", minimum=0)

    @property
    def reserve_bytes(self) -> int:
        return self.reserve_mb * 1024 * 1024

    @property
    def bandwidth_bps(self) -> int | None:
        return self.upload_bandwidth_kbps * 1000 or None

    @property
    def microphone(self) -> SourceConfig | None:
        source = self.microphone_source.strip()
        return None if source in ("", "none") else SourceConfig(source, self.microphone_latency_ms)


def parse_pins(text: str) -> dict[str, str]:
    """Examiner PINs: 'login:PIN' entries, one a line or comma-separated; a PIN is 6 to 12 digits. Raises
    ValueError naming a bad entry (never echoing a PIN)."""
    pins: dict[str, str] = {}
    for entry in text.replace(",", "\n").splitlines():
        if entry.strip():
            login, sep, pin = entry.strip().partition(":")
            if not sep or not login or not pin:
                raise ValueError(f"examiner PINs: expected 'login:PIN', got an entry for {login.strip()!r}")
            if not PIN_RE.fullmatch(pin.strip()):
                raise ValueError(f"examiner PINs: {login}: a PIN is {MIN_PIN_DIGITS} to 12 digits")
            pins[login] = pin.strip()
    return pins


def _finish(cfg: AgentConfig, src: Source) -> None:
    """What spans several keys or reads outside the file: the token, the PINs, the CPR camera and region."""
    cfg.file = src.file
    if cfg.server_url is not None:
        cfg.server_url = cfg.server_url.rstrip("/")
    if cfg.token_file is not None:
        try:
            cfg.token = cfg.token_file.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise src.error("server.token_file", f"cannot read {cfg.token_file}: {exc.strerror}") from None
        if cfg.token is None:
            raise src.error("server.token_file", f"{cfg.token_file} is empty")
    if cfg.token is None:
        cfg.token = src.env.get(cfg.token_env) or None
    if cfg.server_url is not None and cfg.token is None:
        raise src.error("server.token_env", f"a server is set but there is no token: set ${cfg.token_env} or "
                                            "token_file")
    for i, camera in enumerate(cfg.cameras):
        camera.spec = camera.spec.strip()
        if camera.password_file is not None:
            try:
                lines = camera.password_file.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise src.error(f"cameras[{i}].password_file",
                                f"cannot read {camera.password_file}: {exc.strerror}") from None
            camera.password = lines[0].strip() if lines and lines[0].strip() else None
            if camera.password is None:
                raise src.error(f"cameras[{i}].password_file", f"{camera.password_file} is empty")
        if (camera.user is not None or camera.password_file is not None or camera.live_url is not None) \
                and not is_rtsp(camera.spec):
            raise src.error(f"cameras[{i}]", "user, password_file and sub_stream are for rtsp:// cameras")
    try:
        number = camera_audio_index(cfg.microphone_source)
    except SourceError as exc:
        raise src.error("microphone.source", str(exc)) from None
    if number is not None:
        if number >= len(cfg.cameras):
            raise src.error("microphone.source", f"camera {number} is not configured ({len(cfg.cameras)} "
                                                 "[[cameras]], counted from 0)")
        if not is_rtsp(cfg.cameras[number].spec):
            raise src.error("microphone.source", f"camera {number} is not an rtsp:// camera: it has no sound to give")
    if not cfg.data_dir.is_absolute():  # the default: beside the file (or in the working folder without one)
        cfg.data_dir = src.base / cfg.data_dir
    try:
        cfg.pins = parse_pins(cfg.pins_file.read_text(encoding="utf-8") if cfg.pins_file else src.env.get(PINS_ENV, ""))
    except (OSError, ValueError) as exc:
        raise src.error("exam.pins_file" if cfg.pins_file else f"${PINS_ENV}", str(exc)) from None
    if cfg.marking is None:
        cfg.marking = bool(cfg.pins)
    if cfg.marking and not cfg.pins and cfg.server_url is None:
        raise src.error("exam.marking", f"no server to issue PINs: give exam.pins_file or ${PINS_ENV}")
    if cfg.cpr_analysis and cfg.cpr_camera >= len(cfg.cameras):
        raise src.error("cpr.camera", f"camera {cfg.cpr_camera} is not configured ({len(cfg.cameras)} [[cameras]], "
                                      "counted from 0)")
    if cfg.cpr_roi is not None:
        x, y, w, h = cfg.cpr_roi
        if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 - x and 0 < h <= 1 - y):
            raise src.error("cpr.roi", f"must be [x, y, w, h] fractions of the picture inside it, got "
                                       f"{list(cfg.cpr_roi)}")


SPEC = ConfigSpec(
    AgentConfig,
    title="Station agent configuration (`agent.toml`)",
    intro="""
`osce agent run --config /etc/osce/agent.toml`. Every key is optional: without a file the agent records synthetic
cameras and a synthetic microphone into `./agent-data` and talks to no server. Relative paths are taken from the
file's folder. The station token never lives in this file (`server.token_env` or `server.token_file`); examiner
PINs come from `exam.pins_file` or `$OSCE_MARKING_PINS`. A mistake stops the agent with exit status 2 and a message
naming the file, the key and what is wrong.
""",
    sections={
        "station": "The station this room PC records.",
        "server": "The review server: schedule, upload, live picture, marks.",
        "microphone": "The room's microphone; omit `source` (or set `\"none\"`) for no sound.",
        "video": "The pictures every camera is recorded at.",
        "storage": "Where recordings are kept on the room PC.",
        "exam": "The exam day at this station.",
        "http": "The agent's own HTTP port (status, health, clock page).",
        "health": "When the station's warnings are raised.",
        "cpr": "The CPR station only (station_agent/cpr_analysis.py).",
    },
    finish=_finish,
)
SECTIONS = SPEC.section_keys()  # each section and its keys


def load_config(path: Path | None, environ: dict[str, str] | None = None) -> AgentConfig:
    """Read the agent's TOML file (None: the demo defaults). Raises ConfigError."""
    return SPEC.load(path, environ)


if __name__ == "__main__":
    print(SPEC.markdown("python -m station_agent.config > station_agent/CONFIG.md"))
