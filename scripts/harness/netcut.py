"""A TCP proxy on loopback that forwards (at a limited rate, if given) and can be cut and restored: the network
cut between a station's uploader and the review server (tests/agent/test_network_cut.py, the exam day)."""

from __future__ import annotations

import asyncio


class CutProxy:
    """A TCP proxy on loopback that forwards (at a limited rate, if given) and can be cut (everything reset, port
    closed) and restored on the same port. Also the exam-day simulation's proxy between each agent and the server."""

    def __init__(self, upstream_port: int, rate_bps: float | None = None, port: int = 0) -> None:
        self.upstream_port = upstream_port
        self.rate = rate_bps
        self.port = port
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.in_flight = 0  # upstream pipes currently holding data they have not forwarded yet
        self.cuts = 0
        self.cuts_mid_transfer = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self.writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer, True), self._pipe(up_reader, writer, False))
        finally:
            self.writers -= {writer, up_writer}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool) -> None:
        try:
            while data := await reader.read(4096):
                if upstream:
                    self.in_flight += 1
                try:
                    writer.write(data)
                    await writer.drain()
                    if upstream and self.rate:
                        await asyncio.sleep(len(data) / self.rate)
                finally:
                    if upstream:
                        self.in_flight -= 1
            writer.close()
        except (ConnectionError, OSError):
            writer.transport.abort()

    async def cut(self) -> None:
        assert self.server is not None
        self.cuts += 1
        self.cuts_mid_transfer += self.in_flight > 0
        self.server.close()
        for w in list(self.writers):
            w.transport.abort()
        await self.server.wait_closed()
        self.server = None

    async def restore(self) -> None:
        await self.start()
