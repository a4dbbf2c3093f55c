"""A TCP proxy on loopback that delays every chunk of bytes, both ways, by a fixed time:
a slow (not failing) object store or metadata store, made from the real one.

    with DelayProxy(upstream_port, delay_s=0.1) as proxy:
        ... connect to 127.0.0.1:proxy.port ...

Order is kept per direction; every chunk is held `delay_s` after it was read, so a request
and its answer each take at least `delay_s` longer. `proxy.chunks` counts what it carried.
"""

import asyncio
import socket
import threading
import time


class DelayProxy:
    def __init__(self, upstream_port, delay_s, host="127.0.0.1"):
        self.upstream = (host, upstream_port)
        self.delay_s = delay_s
        self.chunks = 0
        self.connections = 0
        with socket.socket() as s:
            s.bind((host, 0))
            self.port = s.getsockname()[1]
        self.host = host
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("delay proxy did not start")
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self):
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, self.host, self.port))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            for t in asyncio.all_tasks(self._loop):
                t.cancel()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    async def _handle(self, reader, writer):
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer),
                             return_exceptions=True)

    async def _pump(self, reader, writer):
        queue = asyncio.Queue()

        async def release():
            while True:
                due, data = await queue.get()
                if data is None:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            writer.close()

        sender = asyncio.ensure_future(release())
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                self.chunks += 1
                queue.put_nowait((time.monotonic() + self.delay_s, data))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            queue.put_nowait((0, None))
            try:
                await sender
            except (OSError, ConnectionError):
                pass
