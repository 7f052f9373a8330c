"""Server configuration: one TOML file, defaults that run the demo, secrets from the environment or a file.

Example `server.toml` (every key optional):

    database_url = "sqlite:///demo-data/server/osce.db"   # or postgresql+psycopg://user@host/db
    media_backend = "local"                                # or "s3"
    media_dir = "demo-data/server/media"
    s3_endpoint_url = "http://127.0.0.1:9000"              # MinIO, Ceph RGW, AWS
    s3_bucket = "osce-media"
    s3_credentials_file = "/etc/osce/s3.toml"              # access_key_id = "...", secret_access_key = "..."
    insecure_cookies = false                               # true only for plain-http demo on localhost
    argon2_time_cost = 3                                   # Argon2id cost; lower only in tests
    idle_timeout_s = 30                                    # close a connection silent or mid-header this long
    body_timeout_s = 30                                    # 408 for a request body not received in this long
    audit_anchor_dir = "/srv/worm/osce-anchors"            # the daily signed audit head (audit_anchor.py)

Secrets never live in this file: the database password may come from OSCE_DATABASE_URL, S3 keys from
OSCE_S3_ACCESS_KEY_ID / OSCE_S3_SECRET_ACCESS_KEY or from `s3_credentials_file`.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path

from .client_address import parse_proxies


class ConfigError(ValueError):
    """A configuration file is wrong; the message names the file and the key."""


@dataclass
class ServerConfig:
    database_url: str = "sqlite:///demo-data/server/osce.db"
    media_backend: str = "local"  # "local" | "s3"
    media_dir: Path = Path("demo-data/server/media")
    s3_endpoint_url: str | None = None
    s3_bucket: str = "osce-media"
    s3_region: str = "us-east-1"
    s3_credentials_file: Path | None = None
    s3_create_bucket: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    # Cookies are Secure unless this is set; browsers drop Secure cookies on plain http except localhost.
    insecure_cookies: bool = False
    session_ttl_s: int = 12 * 3600
    # Throttling (review_server/throttle.py): per (account, address) this many failures are free, then each next
    # attempt waits login_delay_s, doubling per failure up to the window; per address, this many failures inside
    # the window and every login from it waits. A stranger's failures slow the stranger, not the account's owner.
    login_max_failures_per_account: int = 5
    login_max_failures_per_ip: int = 20
    login_window_s: int = 15 * 60
    login_delay_s: int = 2
    # Reverse proxies (addresses or CIDR networks) whose X-Forwarded-For names the client; from any other peer
    # the header is ignored. Empty: the peer's own address is the client's.
    trusted_proxies: list[str] = field(default_factory=list)
    max_json_bytes: int = 1024 * 1024
    max_fragment_bytes: int = 256 * 1024 * 1024
    max_mark_batch: int = 1000
    # A connection that has not sent a whole request head within this many seconds (slowloris), or sits idle
    # between requests this long, is closed; a request being handled is not cut (aiohttp's keep-alive timer).
    idle_timeout_s: int = 30
    # A request body must arrive whole within this many seconds (app.body_deadline), else 408: a client sending
    # it a byte at a time would otherwise hold its connection and handler for ever. The fragment PUT applies it
    # to each chunk; tus.py has its own per-chunk timeout; the live publisher's WebSocket is long-lived by design.
    body_timeout_s: int = 30
    # Argon2id cost (argon2-cffi's RFC 9106 low-memory defaults). Lower them ONLY in tests, where hashing
    # every test user with 64 MiB would take minutes; a production config should keep or raise them.
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    # tus ingest (review_server/tus.py): uploads not yet stored per station, and the bytes they may declare together;
    # an upload that receives nothing for tus_idle_s is removed while the server runs.
    tus_max_open_per_station: int = 32
    tus_max_open_bytes_per_station: int = 2 * 1024 * 1024 * 1024
    tus_idle_s: int = 3600
    # The live relay (review_server/live.py): cameras a station may publish at once, and how long a channel with no
    # publisher and no viewer stays before it is removed.
    live_max_cameras: int = 4
    live_idle_s: int = 60
    # The centre's time zone: an exam day ends at its midnight (examiners' tablet credentials end with the day).
    timezone: str = "Europe/Moscow"
    # Examiners' tablet PINs (review_server/tablet_credentials.py): digits, at least 6. Their key derivation uses
    # the argon2_* costs below, on the room PC at each tablet sign-in.
    tablet_pin_digits: int = 6
    # Only while agents are being upgraded to signed marks (checklists/examiner_keys.py): accept a station's marks
    # without a proof when the named examiner is assigned to that station (audited once per burst). Off: a
    # station's mark must be signed by the examiner's tablet key.
    accept_unsigned_station_marks: bool = False
    # The exam day's schedule (JSON: {"attempts": [{"attempt_id", "candidate", "station_id", "checklist",
    # "reading_starts_at", "reading_s"?, "performing_s"?}]}), served to each station with the server's time.
    schedule_file: Path | None = None
    # Where `osce server audit anchor` writes the daily signed head of the audit chain (audit_anchor.py); default
    # <data dir>/audit-anchors. Best a write-once mount, or a folder copied away every day.
    audit_anchor_dir: Path | None = None
    # Filled from the environment / credentials file, never from the TOML itself.
    s3_access_key_id: str | None = field(default=None, repr=False)
    s3_secret_access_key: str | None = field(default=None, repr=False)

    def s3_credentials(self) -> tuple[str | None, str | None]:
        return self.s3_access_key_id, self.s3_secret_access_key


_SECRET_KEYS = {"s3_access_key_id", "s3_secret_access_key"}


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> ServerConfig:
    """Read `path` (if given) over the defaults, then apply secrets from `env` (default os.environ)."""
    env = dict(os.environ if env is None else env)
    values: dict[str, object] = {}
    if path is not None:
        path = Path(path)
        try:
            with path.open("rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: file not found") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        known = {f.name: f for f in dataclasses.fields(ServerConfig)}
        for key, value in raw.items():
            if key in _SECRET_KEYS:
                raise ConfigError(f"{path}: {key}: secrets do not belong in the config file; use the environment")
            if key not in known:
                raise ConfigError(f"{path}: unknown key {key!r}")
            values[key] = _coerce(path, key, known[key].type, value)
    cfg = ServerConfig(**values)  # type: ignore[arg-type]
    if env.get("OSCE_DATABASE_URL"):
        cfg.database_url = env["OSCE_DATABASE_URL"]
    if cfg.s3_credentials_file is not None:
        try:
            with Path(cfg.s3_credentials_file).open("rb") as fh:
                creds = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{cfg.s3_credentials_file}: {exc}") from exc
        cfg.s3_access_key_id = creds.get("access_key_id")
        cfg.s3_secret_access_key = creds.get("secret_access_key")
    cfg.s3_access_key_id = env.get("OSCE_S3_ACCESS_KEY_ID", cfg.s3_access_key_id)
    cfg.s3_secret_access_key = env.get("OSCE_S3_SECRET_ACCESS_KEY", cfg.s3_secret_access_key)
    try:
        zoneinfo.ZoneInfo(cfg.timezone)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise ConfigError(f"{path or '<defaults>'}: timezone: no time zone {cfg.timezone!r}") from None
    if not 6 <= cfg.tablet_pin_digits <= 12:
        raise ConfigError(f"{path or '<defaults>'}: tablet_pin_digits: 6 to 12, not {cfg.tablet_pin_digits}")
    try:
        parse_proxies(cfg.trusted_proxies)
    except ValueError as exc:
        raise ConfigError(f"{path or '<defaults>'}: {exc}") from None
    if cfg.media_backend not in ("local", "s3"):
        raise ConfigError(f"{path or '<defaults>'}: media_backend must be 'local' or 's3', not {cfg.media_backend!r}")
    return cfg


def _coerce(path: Path, key: str, typ: object, value: object) -> object:
    typ_s = str(typ)
    if "Path" in typ_s:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {key}: expected a path string")
        p = Path(value)
        # Relative paths are relative to the config file, so a config can be moved with its data.
        return p if p.is_absolute() else (path.parent / p)
    if typ_s == "list[str]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{path}: {key}: expected a list of strings")
        return value
    if typ_s == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: {key}: expected true or false")
        return value
    if typ_s == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{path}: {key}: expected an integer")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{path}: {key}: expected a string")
    return value
