"""The station agent's configuration: one TOML file, defaults that run the demo, secrets from outside it.

Every key is optional; without a file the agent records synthetic cameras and a synthetic microphone
into ./agent-data and talks to no server. Relative paths are taken from the file's folder.

```toml
[station]
id = "st1"                      # letters, digits, '-', '_'
name = "Станция 1"              # burned into synthetic pictures, shown on pages

[server]
url = "https://osce.example"    # none: no schedule fetch, no upload
token_env = "OSCE_STATION_TOKEN"  # the token comes from this variable ...
token_file = "/etc/osce/station-token"  # ... or from this file; never from this file's text
upload_bandwidth_kbps = 0       # 0: no cap

[[cameras]]
source = "synthetic"            # a source spec, as for `osce record --video`
latency_ms = 0

[microphone]                    # omit `source` (or set "none") for no sound
source = "synthetic"
latency_ms = 0

[video]
width = 1280
height = 720
fps = 25

[storage]
data_dir = "./agent-data"
reserve_mb = 500                # recording stops cleanly here; a warning from 2 x reserve
delete_after_upload = false

[exam]
checklist = "checklists/data/01_basic_cpr_adult.yaml"
marking = true                  # the tablet marking page (default: on when PINs are given)
pins_file = "/etc/osce/marking-pins"  # no server only: lines login:PIN (else $OSCE_MARKING_PINS), 6+ digits;
                                # with a server, examiners sign in with the PINs it issues (the station's roster)
marking_port = 8081             # the tablet marking page of the current attempt (0: any free port)
schedule_file = "schedule.json" # a local schedule, until the server provides one
warn_before_end_s = 60          # the "one minute left" cue

[http]
host = "127.0.0.1"
port = 8090

[health]
frozen_s = 3                    # a picture unchanged this long is reported frozen
silence_s = 30                  # sound under silence_dbfs this long is reported silent
silence_dbfs = -60

[cpr]                           # the CPR station only (station_agent/cpr_analysis.py)
analysis = false                # true: CPR figures from the camera after each attempt, sent to the server
camera = 0                      # which [[cameras]] entry (from 0) sees the manikin's chest
live = true                     # rolling figures to the observation room while the attempt runs
live_fps = 10                   # pictures per second the live analyser looks at (160 px grey)
roi = [0.3, 0.3, 0.4, 0.4]      # optional: the chest as x, y, w, h fractions of the picture (default: found)
manikin_dir = "/srv/manikin"    # optional: where the manikin's export file appears (media/cpr/FORMATS.md)
manikin_wait_s = 300            # how long after an attempt its manikin file is waited for
```
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from checklists.examiner_keys import MIN_PIN_DIGITS, PIN_RE
from checklists.loader import DATA_DIR
from media.recorder import SourceConfig

DEFAULT_TOKEN_ENV = "OSCE_STATION_TOKEN"
PINS_ENV = "OSCE_MARKING_PINS"
STATION_ID_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,63}\Z")  # \Z: "$" would let a trailing newline in


class ConfigError(ValueError):
    """A configuration problem; the message names the file, the key and what is wrong."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file, self.key, self.problem = file, key, problem
        super().__init__(f"{file}: {key}: {problem}")


@dataclass
class AgentConfig:
    file: str = "<defaults>"
    station_id: str = "station-1"
    station_name: str = "Станция 1"
    server_url: str | None = None
    token: str | None = None
    bandwidth_bps: int | None = None
    cameras: list[SourceConfig] = field(default_factory=lambda: [SourceConfig("synthetic")])
    microphone: SourceConfig | None = field(default_factory=lambda: SourceConfig("synthetic"))
    width: int = 1280
    height: int = 720
    fps: float = 25.0
    data_dir: Path = Path("agent-data")
    reserve_mb: int = 500
    delete_after_upload: bool = False
    checklist: Path = DATA_DIR / "01_basic_cpr_adult.yaml"
    pins_file: Path | None = None
    pins: dict[str, str] = field(default_factory=dict)  # examiner login -> PIN, from pins_file or $OSCE_MARKING_PINS
    marking: bool = False  # serve the tablet marking page (with a server: its roster; else `pins`)
    marking_port: int = 8081
    schedule_file: Path | None = None
    warn_before_end_s: float = 60.0
    host: str = "127.0.0.1"
    port: int = 8090
    frozen_s: float = 3.0
    silence_s: float = 30.0
    silence_dbfs: float = -60.0
    cpr_analysis: bool = False
    cpr_camera: int = 0
    cpr_live: bool = True
    cpr_live_fps: float = 10.0
    cpr_roi: tuple[float, float, float, float] | None = None
    cpr_manikin_dir: Path | None = None
    cpr_manikin_wait_s: float = 300.0

    @property
    def reserve_bytes(self) -> int:
        return self.reserve_mb * 1024 * 1024


SECTIONS: dict[str, set[str]] = {
    "station": {"id", "name"},
    "server": {"url", "token_env", "token_file", "upload_bandwidth_kbps"},
    "cameras": {"source", "latency_ms"},
    "microphone": {"source", "latency_ms"},
    "video": {"width", "height", "fps"},
    "storage": {"data_dir", "reserve_mb", "delete_after_upload"},
    "exam": {"checklist", "marking", "pins_file", "schedule_file", "warn_before_end_s", "marking_port"},
    "http": {"host", "port"},
    "health": {"frozen_s", "silence_s", "silence_dbfs"},
    "cpr": {"analysis", "camera", "live", "live_fps", "roi", "manikin_dir", "manikin_wait_s"},
}


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


class _Reader:
    def __init__(self, file: str, data: dict[str, Any], base: Path) -> None:
        self.file, self.data, self.base = file, data, base

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, key, problem)

    def table(self, name: str) -> dict[str, Any]:
        value = self.data.get(name, {})
        if not isinstance(value, dict):
            raise self.error(name, f"must be a table [{name}], not {type(value).__name__}")
        self.check_keys(name, value)
        return value

    def check_keys(self, name: str, table: dict[str, Any]) -> None:
        for key in table:
            if key not in SECTIONS[name]:
                raise self.error(f"{name}.{key}", f"unknown key (known: {', '.join(sorted(SECTIONS[name]))})")

    def get(self, table: dict[str, Any], section: str, key: str, kind: type, default: Any, *,
            minimum: float | None = None) -> Any:
        if key not in table:
            return default
        value = table[key]
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise self.error(f"{section}.{key}", f"must be {kind.__name__}, not {type(value).__name__} {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(f"{section}.{key}", f"must be at least {minimum:g}, got {value!r}")
        return value

    def path(self, table: dict[str, Any], section: str, key: str, default: Path | None, *,
             must_exist: bool = False) -> Path | None:
        text = self.get(table, section, key, str, None)
        if text is None:
            return default
        if not text.strip():
            raise self.error(f"{section}.{key}", "empty path")
        if "\0" in text:
            raise self.error(f"{section}.{key}", "a path cannot contain a NUL character")
        try:
            path = Path(text).expanduser()
        except RuntimeError:  # ~user of an unknown user
            raise self.error(f"{section}.{key}", f"cannot expand '~' in {text!r}") from None
        path = path if path.is_absolute() else self.base / path
        if must_exist and not path.is_file():
            raise self.error(f"{section}.{key}", f"no such file: {path}")
        return path


def load_config(path: Path | None, environ: dict[str, str] | None = None) -> AgentConfig:
    """Read the agent's TOML file (None: the demo defaults). Raises ConfigError."""
    env = os.environ if environ is None else environ
    if path is None:
        return _build(_Reader("<defaults>", {}, Path.cwd()), env)
    file = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(file, "-", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(file, "-", f"cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "-", f"not valid TOML: {exc}") from None
    for key in data:
        if key not in SECTIONS:
            raise ConfigError(file, key, f"unknown section (known: {', '.join(sorted(SECTIONS))})")
    return _build(_Reader(file, data, Path(path).resolve().parent), env)


def _build(r: _Reader, env: Any) -> AgentConfig:
    cfg = AgentConfig(file=r.file)
    station = r.table("station")
    cfg.station_id = r.get(station, "station", "id", str, cfg.station_id)
    if not STATION_ID_RE.match(cfg.station_id):
        raise r.error("station.id", f"letters, digits, '-' or '_' (up to 64), not {cfg.station_id!r}")
    cfg.station_name = r.get(station, "station", "name", str, cfg.station_name)

    server = r.table("server")
    url = r.get(server, "server", "url", str, None)
    if url is not None:
        if not re.match(r"^https?://[^/\s]+", url):
            raise r.error("server.url", f"must start with http:// or https://, got {url!r}")
        cfg.server_url = url.rstrip("/")
    token_env = r.get(server, "server", "token_env", str, DEFAULT_TOKEN_ENV)
    token_file = r.path(server, "server", "token_file", None)
    if token_file is not None:
        try:
            cfg.token = token_file.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise r.error("server.token_file", f"cannot read {token_file}: {exc.strerror}") from None
        if cfg.token is None:
            raise r.error("server.token_file", f"{token_file} is empty")
    if cfg.token is None:
        cfg.token = env.get(token_env) or None
    if cfg.server_url is not None and cfg.token is None:
        raise r.error("server.token_env", f"a server is set but there is no token: set ${token_env} or token_file")
    kbps = r.get(server, "server", "upload_bandwidth_kbps", int, 0, minimum=0)
    cfg.bandwidth_bps = kbps * 1000 if kbps else None

    cameras = r.data.get("cameras")
    if cameras is not None:
        if not isinstance(cameras, list) or not cameras:
            raise r.error("cameras", "must be one or more [[cameras]] tables")
        cfg.cameras = []
        for i, cam in enumerate(cameras):
            name = f"cameras[{i}]"
            if not isinstance(cam, dict):
                raise r.error(name, "must be a table with source = ...")
            for key in cam:
                if key not in SECTIONS["cameras"]:
                    raise r.error(f"{name}.{key}", "unknown key (known: latency_ms, source)")
            source = r.get(cam, name, "source", str, None)
            if not source or not source.strip():
                raise r.error(f"{name}.source", "missing: a source spec such as \"synthetic\" or \"/dev/video0\"")
            cfg.cameras.append(SourceConfig(source.strip(), r.get(cam, name, "latency_ms", float, 0.0)))

    mic = r.table("microphone")
    source = r.get(mic, "microphone", "source", str, "synthetic")
    latency = r.get(mic, "microphone", "latency_ms", float, 0.0)
    cfg.microphone = None if source.strip() in ("", "none") else SourceConfig(source.strip(), latency)

    video = r.table("video")
    cfg.width = r.get(video, "video", "width", int, cfg.width, minimum=16)
    cfg.height = r.get(video, "video", "height", int, cfg.height, minimum=16)
    cfg.fps = r.get(video, "video", "fps", float, cfg.fps, minimum=1)

    storage = r.table("storage")
    data_dir = r.path(storage, "storage", "data_dir", None)
    cfg.data_dir = data_dir if data_dir is not None else r.base / cfg.data_dir
    cfg.reserve_mb = r.get(storage, "storage", "reserve_mb", int, cfg.reserve_mb, minimum=0)
    cfg.delete_after_upload = r.get(storage, "storage", "delete_after_upload", bool, False)

    exam = r.table("exam")
    cfg.checklist = r.path(exam, "exam", "checklist", cfg.checklist, must_exist=True) or cfg.checklist
    cfg.pins_file = r.path(exam, "exam", "pins_file", None, must_exist=True)
    try:
        pins_text = cfg.pins_file.read_text(encoding="utf-8") if cfg.pins_file else env.get(PINS_ENV, "")
        cfg.pins = parse_pins(pins_text)
    except (OSError, ValueError) as exc:
        raise r.error("exam.pins_file" if cfg.pins_file else f"${PINS_ENV}", str(exc)) from None
    cfg.marking = r.get(exam, "exam", "marking", bool, bool(cfg.pins))
    if cfg.marking and not cfg.pins and cfg.server_url is None:
        raise r.error("exam.marking", f"no server to issue PINs: give exam.pins_file or ${PINS_ENV}")
    cfg.marking_port = r.get(exam, "exam", "marking_port", int, cfg.marking_port, minimum=0)
    cfg.schedule_file = r.path(exam, "exam", "schedule_file", None)
    cfg.warn_before_end_s = r.get(exam, "exam", "warn_before_end_s", float, cfg.warn_before_end_s, minimum=0)

    http = r.table("http")
    cfg.host = r.get(http, "http", "host", str, cfg.host)
    cfg.port = r.get(http, "http", "port", int, cfg.port, minimum=0)
    if cfg.port > 65535:
        raise r.error("http.port", f"must be at most 65535, got {cfg.port}")

    health = r.table("health")
    cfg.frozen_s = r.get(health, "health", "frozen_s", float, cfg.frozen_s, minimum=0.5)
    cfg.silence_s = r.get(health, "health", "silence_s", float, cfg.silence_s, minimum=0.5)
    cfg.silence_dbfs = r.get(health, "health", "silence_dbfs", float, cfg.silence_dbfs)
    _cpr(r, cfg)
    return cfg


def _cpr(r: _Reader, cfg: AgentConfig) -> None:
    cpr = r.table("cpr")
    cfg.cpr_analysis = r.get(cpr, "cpr", "analysis", bool, False)
    cfg.cpr_camera = r.get(cpr, "cpr", "camera", int, 0, minimum=0)
    if cfg.cpr_analysis and cfg.cpr_camera >= len(cfg.cameras):
        raise r.error("cpr.camera", f"camera {cfg.cpr_camera} is not configured ({len(cfg.cameras)} [[cameras]], "
                                    "counted from 0)")
    cfg.cpr_live = r.get(cpr, "cpr", "live", bool, True)
    cfg.cpr_live_fps = r.get(cpr, "cpr", "live_fps", float, cfg.cpr_live_fps, minimum=2)
    roi = cpr.get("roi")
    if roi is not None:
        ok = isinstance(roi, list) and len(roi) == 4 and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in roi)
        x, y, w, h = (float(v) for v in roi) if ok else (0.0, 0.0, 0.0, 0.0)
        if not ok or not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 - x and 0 < h <= 1 - y):
            raise r.error("cpr.roi", f"must be [x, y, w, h] fractions of the picture inside it, got {roi!r}")
        cfg.cpr_roi = (x, y, w, h)
    cfg.cpr_manikin_dir = r.path(cpr, "cpr", "manikin_dir", None)
    cfg.cpr_manikin_wait_s = r.get(cpr, "cpr", "manikin_wait_s", float, cfg.cpr_manikin_wait_s, minimum=0)
