"""An examiner's tablet credential, and the proof that a station's mark event was made by that examiner.

Who marked must come from an examiner who signed in, never from a field a station fills in: a stolen station
token must not be enough to write marks in anyone's name. So the server issues, per examiner, station and exam
day, a PIN (digits, shown once) and an Ed25519 signing key. It keeps only the public key. The station gets the
private key wrapped under the PIN, in its roster for the day (`RosterEntry`): AES-256-GCM under a key derived
from the PIN by Argon2id with a per-credential salt. The PIN itself is stored nowhere; a wrong PIN fails the
GCM tag, so the wrapped key is also the PIN check, and the tablet login works offline. When an examiner signs in
on the tablet, the station unwraps the key into that session's memory and signs each of the examiner's mark
events with it (`sign`); the server checks every mark a station uploads against the public key of the named
examiner's credential for that station and day (`verify`).

What it protects against, and what not: the station token and a running agent are not enough to forge a mark;
the PIN is. Someone who copies the station's roster can search the PIN space offline, at one Argon2id
evaluation per guess (6 digits: 10^6 guesses); the credential is only good for its station and exam day, and
the server can revoke it. Raise the PIN length (the server's `tablet_pin_digits`) where that matters.

Proof on the wire (beside the event's own fields, see checklists/marks.py): ``"proof": {"key_id": "<32 hex>",
"sig": "<base64 of the 64-byte Ed25519 signature of signing_bytes(event)>"}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .marks import MarkEvent, parse_wall_time

MIN_PIN_DIGITS = 6
PIN_RE = re.compile(r"[0-9]{6,12}")
KEY_ID_RE = re.compile(r"[0-9a-f]{32}")
SIGNING_PREFIX = b"osce-mark-event/1\n"
_NONCE = 12


def new_pin(digits: int = MIN_PIN_DIGITS) -> str:
    """A random PIN of `digits` digits (leading zeros allowed)."""
    if digits < MIN_PIN_DIGITS or digits > 12:
        raise ValueError(f"a PIN has {MIN_PIN_DIGITS} to 12 digits, not {digits}")
    return "".join(secrets.choice("0123456789") for _ in range(digits))


def signing_bytes(event: MarkEvent) -> bytes:
    """What is signed: the event's wire JSON, canonical (sorted keys, no spaces, UTF-8), after a domain prefix."""
    body = json.dumps(event.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return SIGNING_PREFIX + body.encode("utf-8")


def sign(key: Ed25519PrivateKey, key_id: str, event: MarkEvent) -> dict[str, str]:
    return {"key_id": key_id, "sig": base64.b64encode(key.sign(signing_bytes(event))).decode("ascii")}


def parse_proof(obj: Any) -> tuple[str, bytes]:
    """(key_id, signature) from a proof object; ValueError saying what is wrong."""
    if not isinstance(obj, dict) or set(obj) != {"key_id", "sig"}:
        raise ValueError('expected {"key_id": ..., "sig": ...}')
    key_id, sig = obj["key_id"], obj["sig"]
    if not isinstance(key_id, str) or not KEY_ID_RE.fullmatch(key_id):
        raise ValueError("key_id: 32 lowercase hex digits")
    try:
        raw = base64.b64decode(sig, validate=True) if isinstance(sig, str) else b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 64:
        raise ValueError("sig: base64 of a 64-byte Ed25519 signature")
    return key_id, raw


def verify(public_key_b64: str, signature: bytes, event: MarkEvent) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64)).verify(signature, signing_bytes(event))
    except (InvalidSignature, ValueError):  # also UnicodeEncodeError: text no signer could have encoded
        return False
    return True


@dataclass(frozen=True)
class Kdf:
    """Argon2id parameters for turning a PIN into the key that wraps the signing key."""

    salt: str  # base64, 16 bytes
    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 1

    def derive(self, pin: str) -> bytes:
        return hash_secret_raw(pin.encode("ascii"), base64.b64decode(self.salt), self.time_cost, self.memory_kib,
                               self.parallelism, 32, Type.ID)


@dataclass(frozen=True)
class RosterEntry:
    """One examiner's credential as a station keeps it (JSON): nothing in it signs a mark without the PIN."""

    login: str
    key_id: str
    station: str
    exam_day: str  # YYYY-MM-DD
    valid_from: str  # ISO-8601 UTC: the credential signs marks only inside [valid_from, valid_until)
    valid_until: str
    public_key: str  # base64, 32 bytes
    wrapped_key: str  # base64: 12-byte nonce + AES-256-GCM of the 32-byte Ed25519 private key
    kdf: Kdf

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: Any) -> RosterEntry:
        """Strict; ValueError naming the field."""
        if not isinstance(obj, dict):
            raise ValueError("roster entry: must be an object")
        names = {"login", "key_id", "station", "exam_day", "valid_from", "valid_until", "public_key",
                 "wrapped_key", "kdf"}
        if set(obj) != names:
            raise ValueError(f"roster entry: fields must be {sorted(names)}")
        for name in names - {"kdf"}:
            if not isinstance(obj[name], str) or not obj[name]:
                raise ValueError(f"roster entry: {name}: a non-empty string")
        if not KEY_ID_RE.fullmatch(obj["key_id"]):
            raise ValueError("roster entry: key_id: 32 lowercase hex digits")
        for name in ("valid_from", "valid_until"):
            try:
                parse_wall_time(obj[name])
            except ValueError as exc:
                raise ValueError(f"roster entry: {name}: {exc}") from None
        kdf = obj["kdf"]
        if not isinstance(kdf, dict) or set(kdf) != {"salt", "time_cost", "memory_kib", "parallelism"}:
            raise ValueError("roster entry: kdf: {salt, time_cost, memory_kib, parallelism}")
        if not all(isinstance(kdf[k], int) and not isinstance(kdf[k], bool) and 1 <= kdf[k] <= 4 * 1024 * 1024
                   for k in ("time_cost", "memory_kib", "parallelism")) or not isinstance(kdf["salt"], str):
            raise ValueError("roster entry: kdf: integer costs within bounds and a base64 salt")
        return cls(**{**obj, "kdf": Kdf(**kdf)})

    @property
    def window(self) -> tuple[datetime, datetime]:
        return parse_wall_time(self.valid_from), parse_wall_time(self.valid_until)

    def unlock(self, pin: str) -> Ed25519PrivateKey | None:
        """The signing key if the PIN is right, else None. Slow on purpose (Argon2id): not on an event loop."""
        if not PIN_RE.fullmatch(pin):
            return None
        try:
            blob = base64.b64decode(self.wrapped_key)
            seed = AESGCM(self.kdf.derive(pin)).decrypt(blob[:_NONCE], blob[_NONCE:], self._aad())
            key = Ed25519PrivateKey.from_private_bytes(seed)
        except (InvalidTag, ValueError, binascii.Error):
            return None
        return key if _public_b64(key) == self.public_key else None

    def _aad(self) -> bytes:
        return f"{self.key_id}|{self.login}|{self.station}|{self.exam_day}".encode()


def _public_b64(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode("ascii")


def issue(login: str, station: str, exam_day: str, valid_from: str, valid_until: str, pin: str,
          time_cost: int = 3, memory_kib: int = 65536, parallelism: int = 1) -> RosterEntry:
    """A new credential for this PIN (the server's side): a fresh key pair, the private key wrapped."""
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    if not PIN_RE.fullmatch(pin):
        raise ValueError(f"a PIN is {MIN_PIN_DIGITS} to 12 digits")
    key = Ed25519PrivateKey.generate()
    kdf = Kdf(base64.b64encode(secrets.token_bytes(16)).decode("ascii"), time_cost, memory_kib, parallelism)
    entry = RosterEntry(login, secrets.token_hex(16), station, exam_day, valid_from, valid_until, _public_b64(key),
                        "", kdf)
    nonce = secrets.token_bytes(_NONCE)
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    wrapped = nonce + AESGCM(kdf.derive(pin)).encrypt(nonce, seed, entry._aad())
    return RosterEntry(**{**entry.to_json(), "kdf": kdf, "wrapped_key": base64.b64encode(wrapped).decode("ascii")})


def throwaway(login: str, station: str) -> tuple[str, Ed25519PrivateKey]:
    """(key_id, key) for a station with no server (its own PINs, nobody to verify): marks still carry a proof."""
    return secrets.token_hex(16), Ed25519PrivateKey.generate()
