"""Server configuration: one TOML file, defaults that run the demo, secrets from the environment or a file.

Every key is declared once below, on the `ServerConfig` field it fills (`media.configspec`); the loader, its error
messages and the reference `review_server/CONFIG.md` (`python -m review_server.config > review_server/CONFIG.md`)
are made from the declarations. Secrets never live in the file: the database password may come from
OSCE_DATABASE_URL, S3 keys from OSCE_S3_ACCESS_KEY_ID / OSCE_S3_SECRET_ACCESS_KEY or from `s3_credentials_file`.
"""

from __future__ import annotations

import tomllib
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

from media.configspec import ConfigError, ConfigSpec, Source, setting

from .client_address import parse_proxies

__all__ = ["ConfigError", "SPEC", "ServerConfig", "load_config"]

KEY_ID_ENV, SECRET_KEY_ENV = "OSCE_S3_ACCESS_KEY_ID", "OSCE_S3_SECRET_ACCESS_KEY"


@dataclass
class ServerConfig:
    database_url: str = setting("database_url", "sqlite:///demo-data/server/osce.db", "SQLAlchemy URL: sqlite:///… or "
                                "postgresql+psycopg://user@host/db", env="OSCE_DATABASE_URL")
    media_backend: str = setting("media_backend", "local", "where recordings are stored", choices=("local", "s3"))
    media_dir: Path = setting("media_dir", Path("demo-data/server/media"), "the folder of the local backend")
    s3_endpoint_url: str | None = setting("s3_endpoint_url", None, "the S3 endpoint (MinIO, Ceph RGW, AWS); none: "
                                          "AWS's")
    s3_bucket: str = setting("s3_bucket", "osce-media", "the bucket")
    s3_region: str = setting("s3_region", "us-east-1", "the region")
    s3_credentials_file: Path | None = setting("s3_credentials_file", None, 'a TOML file with access_key_id = "…" '
                                               'and secret_access_key = "…"')
    s3_create_bucket: bool = setting("s3_create_bucket", False, "create the bucket when it is missing")
    host: str = setting("host", "127.0.0.1", "the address to listen on")
    port: int = setting("port", 8080, "the port", minimum=0, maximum=65535)
    # Browsers drop Secure cookies on plain http except localhost.
    insecure_cookies: bool = setting("insecure_cookies", False, "cookies without Secure: only for a plain-http demo "
                                     "on localhost")
    session_ttl_s: int = setting("session_ttl_s", 12 * 3600, "a login session lasts this long", minimum=1)
    login_max_failures_per_account: int = setting("login_max_failures_per_account", 5, "logins of one account are "
                                                  "refused after this many failures inside the window", minimum=1)
    login_max_failures_per_ip: int = setting("login_max_failures_per_ip", 20, "... and of one address", minimum=1)
    login_window_s: int = setting("login_window_s", 15 * 60, "the window of login failures", minimum=1)
    login_delay_s: int = setting("login_delay_s", 2, "per (account, address), once its free failures are used, each "
                                 "next login waits this long, doubling per failure up to the window (a stranger's "
                                 "failures slow the stranger, not the account's owner)", minimum=0)
    trusted_proxies: list[str] = setting("trusted_proxies", default_factory=list, help="reverse proxies (addresses "
                                         "or CIDR networks) whose X-Forwarded-For names the client; from any other "
                                         "peer the header is ignored; empty: the peer's own address is the client's")
    max_json_bytes: int = setting("max_json_bytes", 1024 * 1024, "the largest JSON request body", minimum=1)
    max_fragment_bytes: int = setting("max_fragment_bytes", 256 * 1024 * 1024, "the largest media fragment uploaded",
                                      minimum=1)
    max_mark_batch: int = setting("max_mark_batch", 1000, "the most mark events in one request", minimum=1)
    # aiohttp's keep-alive timer: a request being handled is not cut.
    idle_timeout_s: int = setting("idle_timeout_s", 30, "a connection that has not sent a whole request head in this "
                                  "long (slowloris), or sits idle between requests this long, is closed", minimum=1)
    # The fragment PUT applies it to each chunk; tus.py has its own per-chunk timeout; the live publisher's WebSocket
    # is long-lived by design.
    body_timeout_s: int = setting("body_timeout_s", 30, "a request body must arrive whole within this long, else "
                                  "408 (a client sending a byte at a time would hold its handler for ever)", minimum=1)
    # argon2-cffi's RFC 9106 low-memory defaults; hashing every test user with 64 MiB would take minutes.
    argon2_time_cost: int = setting("argon2_time_cost", 3, "Argon2id passes; lower only in tests", minimum=1)
    argon2_memory_kib: int = setting("argon2_memory_kib", 65536, "Argon2id memory; lower only in tests", minimum=8)
    argon2_parallelism: int = setting("argon2_parallelism", 4, "Argon2id lanes", minimum=1)
    tus_max_open_per_station: int = setting("tus_max_open_per_station", 32, "tus uploads not yet stored that one "
                                            "station may hold open (review_server/tus.py)", minimum=1)
    tus_max_open_bytes_per_station: int = setting("tus_max_open_bytes_per_station", 2 * 1024 * 1024 * 1024,
                                                  "the bytes those open uploads may declare together", minimum=1)
    tus_idle_s: int = setting("tus_idle_s", 3600, "an upload that receives nothing this long is removed while the "
                              "server runs", minimum=1)
    live_max_cameras: int = setting("live_max_cameras", 4, "cameras a station may publish live at once (cam0 ..)",
                                    minimum=1, maximum=64)
    live_idle_s: int = setting("live_idle_s", 60, "a live channel with no publisher and no viewer is removed after "
                               "this long", minimum=1)
    timezone: str = setting("timezone", "Europe/Moscow", "the centre's time zone: an exam day ends at its midnight "
                            "(examiners' tablet credentials end with the day)")
    # Identification on the picture (review_server/ident.py): the state-exam video rules want the region and the
    # exam point's code on the broadcast and the recording.
    centre_region: str = setting("centre_region", "", "the region shown on every picture (live, review, HLS, the "
                                 "export's burned-in video), e.g. \"77 г. Москва\"")
    centre_code: str = setting("centre_code", "", "the exam point's (centre's) code shown on every picture")
    centre_name: str = setting("centre_name", "", "the centre's short name shown beside its code")
    export_identified_video: bool = setting("export_identified_video", True, "an export package carries, beside "
                                            "the originals, one MP4 per attempt with the identification burned in "
                                            "(review_server/burn_in.py), made at the lowest priority")
    tablet_pin_digits: int = setting("tablet_pin_digits", 6, "digits of the examiners' tablet PINs "
                                     "(review_server/tablet_credentials.py); their key derivation uses the argon2_* "
                                     "costs on the room PC", minimum=6, maximum=12)
    # Only while agents are being upgraded to signed marks (checklists/examiner_keys.py).
    accept_unsigned_station_marks: bool = setting("accept_unsigned_station_marks", False, "accept a station's marks "
                                                  "without a tablet proof when the named examiner is assigned to the "
                                                  "station (audited once per burst); only during an agent upgrade")
    schedule_file: Path | None = setting("schedule_file", None, 'the exam day\'s schedule served to each station with '
                                         'the server\'s time (JSON: {"attempts": [{"attempt_id", "candidate", '
                                         '"station_id", "checklist", "reading_starts_at", "reading_s"?, '
                                         '"performing_s"?}]})')
    examiners_per_station: int = setting("examiners_per_station", 2, "commission members who mark and sign each "
                                         "attempt: a day's completeness check wants this many signed sheets per "
                                         "attempt and as many examiners assigned to each station",
                                         minimum=1, maximum=10)
    audit_anchor_dir: Path | None = setting("audit_anchor_dir", None, "where `osce server audit anchor` writes the "
                                            "daily signed head of the audit chain (audit_anchor.py); none: <data "
                                            "dir>/audit-anchors. Best a write-once mount, or a folder copied away "
                                            "every day")
    # Readiness checks before the exam day (review_server/readiness.py, readiness_judge.py).
    readiness_seconds: int = setting("readiness_seconds", 10, "the length of a readiness check's test recording",
                                     minimum=3, maximum=20)
    readiness_claim_timeout_s: int = setting("readiness_claim_timeout_s", 30, "a check no agent has taken in this "
                                             "long is red: the station's agent is not online", minimum=2)
    readiness_report_timeout_s: int = setting("readiness_report_timeout_s", 180, "a taken check with no report in "
                                              "this long is red", minimum=10)
    readiness_max_clock_offset_s: float = setting("readiness_max_clock_offset_s", 1.0, "a station clock further "
                                                  "than this from the server's is red", minimum=0.01)
    readiness_max_sync_ms: float = setting("readiness_max_sync_ms", 40.0, "a measured sound-to-picture offset "
                                           "beyond this is red (EBU R37 allows +40/-60 ms)", minimum=1)
    readiness_min_fps_ratio: float = setting("readiness_min_fps_ratio", 0.9, "a camera delivering fewer pictures "
                                             "per second than this share of the requested rate is red",
                                             minimum=0.1, maximum=1.0)
    readiness_disk_margin: float = setting("readiness_disk_margin", 1.25, "free disk must hold the day's planned "
                                           "recording times this (measured on the test recording) plus the reserve",
                                           minimum=1.0)
    readiness_keep_days: int = setting("readiness_keep_days", 30, "test recordings are deleted this long after "
                                       "their check (the results, the act, stay); 0: kept", minimum=0)
    s3_access_key_id: str | None = setting("s3_access_key_id", None, "S3 access key (or in s3_credentials_file)",
                                           env=KEY_ID_ENV, secret=True)
    s3_secret_access_key: str | None = setting("s3_secret_access_key", None, "S3 secret key (or in "
                                               "s3_credentials_file)", env=SECRET_KEY_ENV, secret=True)

    def __repr__(self) -> str:  # the secrets stay out of logs and tracebacks
        shown = {k: v for k, v in vars(self).items() if k not in ("s3_access_key_id", "s3_secret_access_key")}
        return f"ServerConfig({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def s3_credentials(self) -> tuple[str | None, str | None]:
        return self.s3_access_key_id, self.s3_secret_access_key


def _finish(cfg: ServerConfig, src: Source) -> None:
    """Checks across keys, and the S3 keys of `s3_credentials_file` where the environment does not give them."""
    try:
        zoneinfo.ZoneInfo(cfg.timezone)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise src.error("timezone", f"no time zone {cfg.timezone!r}") from None
    try:
        parse_proxies(cfg.trusted_proxies)
    except ValueError as exc:
        raise src.error("trusted_proxies", str(exc)) from None
    if cfg.s3_credentials_file is None:
        return
    try:
        with cfg.s3_credentials_file.open("rb") as fh:
            creds = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise src.error("s3_credentials_file", f"{cfg.s3_credentials_file}: {exc}") from None
    if not src.env.get(KEY_ID_ENV):
        cfg.s3_access_key_id = creds.get("access_key_id")
    if not src.env.get(SECRET_KEY_ENV):
        cfg.s3_secret_access_key = creds.get("secret_access_key")


SPEC = ConfigSpec(
    ServerConfig,
    title="Review server configuration (`server.toml`)",
    intro="""
`osce server run --config /etc/osce/server.toml` (and every other `osce server` command). Every key is optional;
the defaults run the demo on SQLite and a local folder. Relative paths are taken from the file's folder. Secrets
never live in this file: the database URL with its password may come from `$OSCE_DATABASE_URL`, the S3 keys from
the environment or `s3_credentials_file`.
""",
    finish=_finish,
)


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> ServerConfig:
    """Read `path` (if given) over the defaults, then apply secrets from `env` (default os.environ)."""
    return SPEC.load(path, env)


if __name__ == "__main__":
    print(SPEC.markdown("python -m review_server.config > review_server/CONFIG.md"))
