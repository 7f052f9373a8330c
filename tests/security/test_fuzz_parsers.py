"""Bounded-time fuzzing of the parsers we own that had no fuzzing yet.

Each parser has one error type that names what is wrong and where (ChecklistError, ApiError 400, the agent's
ConfigError, MarkEventError, FeedbackError). Whatever the input, it either parses or raises that type: any other
exception is a crash, and a bug. Inputs are random text and mutations of real, valid files (so that the fuzzer
gets past the first line). Budgets are fixed (max_examples, derandomized) so the whole file runs in CI in
well under 30 s.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from checklists.loader import DATA_DIR, ChecklistError, load_checklist, parse_checklist
from checklists.marks import MarkEvent, MarkEventError
from media.cpr.manikin import FeedbackError, read_feedback
from review_server.tus import _fragment_meta, parse_metadata
from review_server.web import ApiError
from station_agent.config import SECTIONS, ConfigError, load_config

BUDGET = settings(max_examples=100, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SAMPLES = Path(__file__).resolve().parent.parent / "media" / "cpr_samples"
CHECKLIST_TEXT = sorted(DATA_DIR.glob("*.yaml"))[0].read_text(encoding="utf-8")


@st.composite
def mutated(draw: st.DrawFn, original: str, junk_text: st.SearchStrategy[str]) -> str:
    """A valid file with a few slices deleted, replaced or duplicated."""
    text = original
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 40)))
        op = draw(st.sampled_from(["delete", "replace", "duplicate", "insert"]))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        else:
            junk = draw(junk_text)[:24]
            text = text[:i] + junk + (text[j:] if op == "replace" else text[i:])
    return text


# --- checklist YAML -------------------------------------------------------------------------------

YAML_BITS = st.sampled_from(list(":-[]{},&*!|>'\"#%@`?\n\t ") + [
    "!!timestamp ", "!!binary ", "!!int ", "!!float ", "!!set ", "!!python/object:os.system ", "!foo ", "&a ", "*a ",
    "<<: ", "2026-13-45", "0x_", ".nan", "~", "null", "yes", "1e999", "\x00", "\ufeff", "\ud800", "---\n", "...\n",
])
YAML_TEXT = st.lists(st.one_of(st.characters(), YAML_BITS), max_size=120).map("".join)


def _checklist_refusal(call: Any) -> None:
    try:
        call()
    except ChecklistError as exc:
        assert exc.problems and all(p.file and p.field and p.line >= 0 for p in exc.problems)
        assert str(exc).count(":") >= 2  # "file:line: field: message"


@BUDGET
@given(text=YAML_TEXT)
@example(text="title: !!timestamp 2026-13-45")
@example(text="title: 2026-02-30")
@example(text="title: !foo x")
@example(text="title: !!int 0x_")
@example(text="a: &a [*a]")
@example(text="a: " + "[" * 3000)
@example(text="a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)))  # billion laughs
def test_checklist_text_loads_or_is_a_checklist_error(text: str) -> None:
    _checklist_refusal(lambda: parse_checklist(text, "fuzz.yaml"))


@BUDGET
@given(text=mutated(CHECKLIST_TEXT, YAML_TEXT))
def test_mutated_checklist_loads_or_is_a_checklist_error(text: str) -> None:
    _checklist_refusal(lambda: parse_checklist(text, "fuzz.yaml"))


@settings(BUDGET, max_examples=60)
@given(data=st.binary(max_size=200))
@example(data=b"\xff\xfe\x00t")
@example(data=CHECKLIST_TEXT.encode()[:50] + b"\xc3")
def test_checklist_file_bytes_load_or_are_a_checklist_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    _checklist_refusal(lambda: load_checklist(path))


# --- tus Upload-Metadata --------------------------------------------------------------------------


def _b64(value: str) -> str:
    return base64.b64encode(value.encode("utf-8", "surrogatepass")).decode()


VALID_META = {"sha256": "a" * 64, "recording": "rec1", "track": "cam0", "seq": "1", "kind": "media",
              "filename": "cam0-000001.m4s", "attempt_id": "att1", "start": "0.0", "end": "2.0"}
# What aiohttp hands the handler: header bytes decoded as Latin-1-ish text, never a lone surrogate
# that did not come from the wire.
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from(", \t="), max_size=200)


def _meta_refusal(header: str) -> None:
    try:
        frag = _fragment_meta(parse_metadata(header))
    except ApiError as exc:
        assert exc.status == 400 and exc.where == "Upload-Metadata"
    else:
        assert set(frag) >= {"sha256", "recording", "track", "seq", "kind"}
        assert "/" not in frag["recording"] + frag["track"] and "\\" not in frag["recording"] + frag["track"]


@BUDGET
@given(header=HEADER_TEXT)
@example(header="sha256")
@example(header="sha256 ,sha256 ")
@example(header="a !!!")
@example(header="seq " + _b64("9" * 40))
def test_any_metadata_header_is_parsed_or_a_400(header: str) -> None:
    _meta_refusal(header)


@BUDGET
@given(field=st.sampled_from(sorted(VALID_META)), value=st.text(max_size=40) | st.sampled_from(
    ["../../etc/passwd", "..\\..\\x", "/abs", "a\x00b", "%2e%2e", "nan", "inf", "1e999", "-1", "0", "١٢"]))
def test_one_metadata_value_changed_to_anything_is_parsed_or_a_400(field: str, value: str) -> None:
    meta = {**VALID_META, field: value}
    _meta_refusal(",".join(f"{k} {_b64(v)}" for k, v in meta.items()))


def test_non_ascii_metadata_is_a_400_not_a_crash() -> None:
    _meta_refusal("filename Zm9vé")


# --- the agent's TOML config ------------------------------------------------------------------------

TOML_VALUES = st.one_of(
    st.text(max_size=20), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True), st.booleans(),
    st.sampled_from(["", "none", "~nobody-here/x", "a\x00b", "../../etc/passwd", "http://x\nEvil: 1", "\u0000"]),
)


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string with \uXXXX escapes is a valid TOML basic string


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or abs(value) == float("inf"):
            return {True: "nan"}.get(value != value, "inf" if value > 0 else "-inf")
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return _toml_str(value)


@st.composite
def agent_configs(draw: st.DrawFn) -> str:
    lines = []
    for section in draw(st.lists(st.sampled_from([*sorted(SECTIONS), "bogus"]), max_size=5, unique=True)):
        keys = sorted(SECTIONS.get(section, {"x"})) + ["typo"]
        header = f"[[{section}]]" if section == "cameras" else f"[{section}]"
        lines.append(header)
        for key in draw(st.lists(st.sampled_from(keys), max_size=4, unique=True)):
            value = draw(TOML_VALUES | st.lists(TOML_VALUES, max_size=2))
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _config_refusal(tmp_path: Path, text: str | bytes) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        cfg = load_config(path, environ={"OSCE_STATION_TOKEN": "osce_st_x"})
    except ConfigError as exc:
        assert exc.file == str(path) and exc.key and exc.problem
    else:
        assert cfg.station_id.isprintable() and "\n" not in cfg.station_id


@BUDGET
@given(text=agent_configs())
@example(text='[exam]\nchecklist = "a\\u0000b"\n')
@example(text='[server]\ntoken_file = "a\\u0000b"\n')
@example(text='[storage]\ndata_dir = "~nobody-here/x"\n')
@example(text='[station]\nid = "S1\\n"\n')
def test_generated_agent_config_loads_or_is_a_config_error(tmp_path: Path, text: str) -> None:
    _config_refusal(tmp_path, text)


@settings(BUDGET, max_examples=80)
@given(data=st.binary(max_size=120) | st.text(max_size=120))
@example(data=b"\xff\xfe[station]")
@example(data="[station\nid=")
def test_any_agent_config_bytes_load_or_are_a_config_error(tmp_path: Path, data: bytes | str) -> None:
    _config_refusal(tmp_path, data)


# --- the mark-event wire format ---------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
VALID_EVENT = MarkEvent.new(attempt_id="att1", station_id="S1", examiner="examiner", kind="mark", item=1,
                            done=True, checklist_hash="c" * 64, seq=1, event_id=str(uuid.uuid4())).to_json()


def _event_refusal(obj: Any) -> None:
    try:
        ev = MarkEvent.from_json(obj)
    except MarkEventError as exc:
        assert str(exc).startswith(f"{exc.field}: ")
    else:
        assert MarkEvent.from_json(json.loads(json.dumps(ev.to_json()))) == ev


@BUDGET
@given(obj=JSON_VALUES)
def test_any_json_is_a_mark_event_or_a_mark_event_error(obj: Any) -> None:
    _event_refusal(obj)


@BUDGET
@given(field=st.sampled_from(sorted(VALID_EVENT)), value=JSON_VALUES | st.sampled_from(
    ["2026-06-01T09:30:00+00:00", "2026-06-01T09:30:00+03:00", "2026-13-01T00:00:00Z", "\x00", "\ud800",
     str(uuid.uuid1()), str(uuid.uuid4()).upper(), 10**400, float("nan"), float("inf"), -1, True]))
def test_one_event_field_changed_to_anything_is_parsed_or_named(field: str, value: Any) -> None:
    _event_refusal({**VALID_EVENT, field: value})


# --- CPR manikin CSV importers ----------------------------------------------------------------------

OSCE_CSV = (SAMPLES / "session_110_osce.csv").read_text(encoding="utf-8")[:1500]
TRAINER_CSV = (SAMPLES / "session_110_trainer.csv").read_text(encoding="utf-8-sig")[:1500]
CSV_TEXT = st.lists(st.one_of(st.characters(), st.sampled_from(list(",;:\"\n\r.#") + [
    "nan", "inf", "-1", "1e999", "\x00", "compression", "ventilation", "Компрессия", "Вдох", "01:02:03:04"])),
    max_size=8).map("".join)


def _feedback_refusal(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "feedback.csv"
    path.write_bytes(data)
    try:
        fb = read_feedback(path)
    except FeedbackError as exc:
        assert str(path) in str(exc)
    else:
        assert fb.compressions and all(a.t <= b.t for a, b in zip(fb.compressions, fb.compressions[1:], strict=False))


@BUDGET
@given(text=mutated(OSCE_CSV, CSV_TEXT) | mutated(TRAINER_CSV, CSV_TEXT))
@example(text=OSCE_CSV.replace("97.250", '"97.250'))  # a quote opening a field that spans lines
@example(text=OSCE_CSV.replace("97.250", "nan"))
@example(text=OSCE_CSV.replace("compression,52,", 'compression,"52\n",', 1))  # a quoted field joining two lines
def test_mutated_manikin_csv_reads_or_is_a_feedback_error(tmp_path: Path, text: str) -> None:
    _feedback_refusal(tmp_path, text.encode("utf-8", "surrogatepass"))


@settings(BUDGET, max_examples=80)
@given(data=st.binary(max_size=200))
@example(data=b"# osce-cpr-feedback/1\n\xff\xff")
@example(data=b"\xff\xfe\x00\xd8")  # a UTF-16 BOM, then a lone surrogate
@example(data=b"\xff\xfeA")  # a UTF-16 BOM and an odd number of bytes
def test_any_manikin_bytes_read_or_are_a_feedback_error(tmp_path: Path, data: bytes) -> None:
    _feedback_refusal(tmp_path, data)
