"""Running the app with uvicorn on a socket we bind ourselves (so "port in use" is a clear error)."""

from __future__ import annotations

import socket
import threading
import time

from pianonotes.errors import PianonotesError

WS_MAX_BYTES = 4 * 1024 * 1024  # one WebSocket message; audio blocks are far smaller


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), int(port)))
    except OSError as exc:
        sock.close()
        if exc.errno in (98, 48):  # EADDRINUSE (Linux, macOS)
            raise PianonotesError(f"port {port} on {host} is in use; choose another with --port") from exc
        raise PianonotesError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def make_server(app, sock: socket.socket, *, log_level: str = "warning", certfile: str | None = None,
                keyfile: str | None = None):
    """A uvicorn server for ``app`` on ``sock``; with ``certfile`` (and ``keyfile`` unless the certificate
    file holds the key too) it speaks https and wss."""
    import ssl

    import uvicorn

    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, ws_max_size=WS_MAX_BYTES,
                            ws_ping_interval=20.0, ws_ping_timeout=20.0, lifespan="off", access_log=False,
                            ssl_certfile=certfile, ssl_keyfile=keyfile)
    if certfile is not None:
        try:
            config.load()  # reads the certificate now, so a bad one is an error before the server starts
        except (ssl.SSLError, OSError) as exc:
            why = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
            raise PianonotesError(f"cannot use the certificate {certfile}" + (f" with key {keyfile}" if keyfile else "")
                                  + f" ({why}); give a PEM certificate and its private key") from exc
    return uvicorn.Server(config)


class ServerThread:
    """uvicorn in a background thread on a loopback port (tests and the benchmark)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, *, certfile: str | None = None,
                 keyfile: str | None = None):
        self.sock = bind(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        self.scheme = "https" if certfile else "http"
        self.server = make_server(app, self.sock, certfile=certfile, keyfile=keyfile)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="pianonotes-serve", daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise PianonotesError("the web server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
