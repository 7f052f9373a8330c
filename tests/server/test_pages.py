"""The server's pages as a whole: every response carries the security headers (over a real socket, HSTS only
over TLS), the templates hold no inline script, style or event handler (so the CSP can forbid them), no Python
module of the server writes HTML, and the Russian and English catalogues have the same texts."""

from __future__ import annotations

import datetime as dt
import json
import re
import ssl
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from review_server import i18n
from review_server.app import CONTENT_SECURITY_POLICY, create_app
from review_server.config import ServerConfig
from review_server.storage import LocalStorage

from .conftest import World
from .test_route_matrix import EXPECTED, fill

SERVER = Path(__file__).resolve().parents[2] / "review_server"
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def test_the_policy_forbids_inline_script_and_style_and_framing() -> None:
    rules = dict(rule.split(" ", 1) for rule in CONTENT_SECURITY_POLICY.split("; "))
    assert rules["script-src"] == "'self'" and rules["style-src"] == "'self'" and rules["default-src"] == "'self'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    assert rules["frame-ancestors"] == "'none'" and rules["object-src"] == "'none'" and rules["base-uri"] == "'none'"
    assert rules["form-action"] == "'self'" and rules["connect-src"] == "'self'"


async def test_every_response_carries_the_security_headers(world: World) -> None:
    """Every route with every principal, so refusals (401, 403, 404, 405, 400) are covered as well as pages,
    files, JSON and the redirect to the login page."""
    client, missing, seen = world.api.client, [], set()
    for (method, path), allowed in sorted(EXPECTED.items(), key=str):
        for principal in (None, "admin", "archivist", "station", *sorted(p for p in allowed if p)):
            headers = world.headers(principal) | {"Accept": "text/html"}
            resp = await client.request(method, fill(path), headers=headers, allow_redirects=False)
            seen.add(resp.status)
            got = {k: resp.headers.get(k) for k in HEADERS}
            if got != HEADERS or "Strict-Transport-Security" in resp.headers:
                missing.append((method, path, principal, resp.status, got))
    for path in ("/no-such-page", "/static/../app.py", "/attempts/P1?lang=<x>"):
        resp = await client.get(path, allow_redirects=False)
        if {k: resp.headers.get(k) for k in HEADERS} != HEADERS:
            missing.append(("GET", path, None, resp.status))
    assert missing == []
    assert {200, 303, 401, 403, 404} <= seen


def _self_signed(folder: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1)).sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


async def test_hsts_only_when_served_over_tls(config: ServerConfig, tmp_path: Path) -> None:
    app = create_app(config, storage=LocalStorage(config.media_dir))
    runner = web.AppRunner(app)
    await runner.setup()
    tls = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=_self_signed(tmp_path))
    plain = web.TCPSite(runner, "127.0.0.1", 0)
    await tls.start()
    await plain.start()
    try:
        (tls_port, plain_port) = (site._server.sockets[0].getsockname()[1] for site in (tls, plain))  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as http:
            over_tls = await http.get(f"https://127.0.0.1:{tls_port}/login", ssl=False)
            over_http = await http.get(f"http://127.0.0.1:{plain_port}/login")
        assert over_tls.status == over_http.status == 200
        assert over_tls.headers["Strict-Transport-Security"] == "max-age=31536000"
        assert "Strict-Transport-Security" not in over_http.headers
        assert over_tls.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    finally:
        await runner.cleanup()


def test_no_python_module_of_the_server_writes_html() -> None:
    tag = re.compile(r"<(td|tr|th|div|html|table|li|ul|p|a|span|button|script|style|meta|form|input)[\s>/]")
    found = [f"{p.relative_to(SERVER)}:{n}" for p in SERVER.rglob("*.py")
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if tag.search(line)]
    assert found == []


def test_pages_have_no_inline_script_style_or_event_handler() -> None:
    pages = [*SERVER.joinpath("templates").glob("*.html"), *SERVER.joinpath("static").rglob("*.html")]
    assert len(pages) >= 8
    inline = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|\son[a-z]+=|javascript:", re.I)
    assert [f"{p.name}: {m.group(0)}" for p in pages for m in inline.finditer(p.read_text(encoding="utf-8"))] == []


def test_russian_and_english_catalogues_have_the_same_texts() -> None:
    ru, en = i18n.CATALOGUE["ru"], i18n.CATALOGUE["en"]
    assert sorted(ru) == sorted(en)
    for section in ru:
        assert sorted(ru[section]) == sorted(en[section]), section
        assert all(isinstance(v, str) and v.strip() for v in [*ru[section].values(), *en[section].values()]), section
    for name in ("ru", "en"):  # no key given twice in one section (json.loads would keep the last silently)
        json.loads((SERVER / "i18n" / f"{name}.json").read_text(encoding="utf-8"), object_pairs_hook=_no_repeats)


def _no_repeats(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    return dict(pairs)


def test_one_language_parameter_rule() -> None:
    class Q:
        def __init__(self, query: dict[str, str]) -> None:
            self.query = query

    queries = ({}, {"lang": "en"}, {"lang": "ru"}, {"lang": "EN<"})
    assert [i18n.lang_of(Q(q)) for q in queries] == ["ru", "en", "ru", "ru"]
    assert i18n.result_text("не сдано", "en") == "failed" and i18n.result_text("сдано", "ru") == "сдано"
    assert i18n.decimal(78.94, "ru") == "78,9" and i18n.decimal(78.94, "en") == "78.9"


async def test_static_files_are_a_fixed_list(world: World) -> None:
    """/static/{name} serves the pages' CSS and JS to anyone, by name from a fixed list: no path from the URL."""
    client = world.api.client
    for name, kind in (("base.css", "text/css"), ("review.css", "text/css"), ("attempt.js", "text/javascript")):
        resp = await client.get(f"/static/{name}")
        assert resp.status == 200 and resp.content_type == kind, name
    for bad in ("/static/..%2fapp.py", "/static/%2e%2e%2fweb.py", "/static/attempt.js%00.html", "/static/live.js",
                "/static/../i18n/ru.json", "/static/" + "..%2f" * 20 + "etc%2fpasswd"):
        resp = await client.get(bad)
        assert resp.status == 404, bad
