"""`osce server run` as a systemd service: serve, tell systemd when ready (Type=notify), and feed the watchdog
only while the server really works (its event loop turns and its database answers), so that systemd restarts
a server that hangs rather than one that merely exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web
from sqlalchemy import text

from media import sdnotify

from .web import DB

log = logging.getLogger(__name__)

DEFAULT_CHECK_S = 10.0  # without a systemd watchdog the health check still runs, for the STATUS line


async def _database_answers(app: web.Application, timeout_s: float) -> bool:
    def ping() -> None:
        app[DB].run(lambda s: s.execute(text("SELECT 1")))

    try:
        await asyncio.wait_for(asyncio.to_thread(ping), timeout_s)
    except Exception as exc:  # any failure: this ping is skipped and systemd decides
        log.warning("watchdog: the database does not answer (%s)", exc)
        return False
    return True


async def _watchdog(app: web.Application) -> None:
    interval = sdnotify.watchdog_interval() or DEFAULT_CHECK_S
    while True:
        if await _database_answers(app, interval):
            sdnotify.notify("WATCHDOG=1")
            sdnotify.notify("STATUS=serving")
        else:
            sdnotify.notify("STATUS=database not answering")
        await asyncio.sleep(interval)


async def _serve(app: web.Application, host: str, port: int, keepalive_timeout_s: float) -> None:
    # handle_signals: SIGTERM/SIGINT end the sleep below with GracefulExit, as web.run_app does.
    runner = web.AppRunner(app, handle_signals=True, keepalive_timeout=keepalive_timeout_s)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("serving on http://%s:%s", host, port)
        sdnotify.notify("READY=1")
        await _watchdog(app)
    finally:
        sdnotify.notify("STOPPING=1")
        await runner.cleanup()


def serve(app: web.Application, host: str, port: int, keepalive_timeout_s: float) -> None:
    """Run until SIGTERM or SIGINT, then close connections and clean the application up."""
    with contextlib.suppress(KeyboardInterrupt, web.GracefulExit):
        asyncio.run(_serve(app, host, port, keepalive_timeout_s))
