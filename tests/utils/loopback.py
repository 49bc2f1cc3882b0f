"""A real ASGI app served by uvicorn on a thread of the test process, bound to 127.0.0.1: for an
app that a client opening real connections (the gateway's aiohttp upstreams) has to reach."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

START_S = 120  # the retrieval app's lifespan loads the embedding model


@contextmanager
def serve_on_loopback(app: ASGIApp) -> Iterator[str]:
    """Its URL once its lifespan has started, until the block ends; then it shuts down."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # bound before uvicorn starts: no other process can take the port
    # log_config=None: the app's own logging stays as its create_app set it.
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_S
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped before it served (see the log above)"
            assert time.monotonic() < deadline, f"uvicorn did not serve within {START_S} s"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()
