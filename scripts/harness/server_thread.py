"""An aiohttp application served on 127.0.0.1 from its own thread and event loop, for a browser test's
synchronous Playwright to talk to."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web


class ServerThread:
    def __init__(self, app: web.Application) -> None:
        self.app, self.loop, self.port = app, asyncio.new_event_loop(), 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="e2e-server", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", 0).start())
        self.port = self.runner.addresses[0][1]
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> str:
        self._thread.start()
        assert self._ready.wait(10)
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
