"""``pianonotes serve``: the command (the only part of pianonotes.serve that prints or exits).

Starlette, uvicorn and torch are imported inside the command, so ``pianonotes --help`` stays instant.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Optional

import typer

from pianonotes import serve
from pianonotes.cli.console import console, fail
from pianonotes.errors import PianonotesError


def serve(
    host: str = typer.Option(serve.DEFAULT_HOST, "--host", help="Address to listen on. Anything but a loopback "
                             "address exposes the app to the network (a token is then required)."),
    port: int = typer.Option(serve.DEFAULT_PORT, "--port", help="TCP port (0: any free port)."),
    model: Optional[Path] = typer.Option(None, "--model", help="Checkpoint (default: the shipped AudioNet)."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open the page in a browser."),
    max_upload_mb: float = typer.Option(serve.MAX_UPLOAD_MB, "--max-upload-mb", help="Largest upload accepted."),
    max_upload_minutes: float = typer.Option(serve.MAX_UPLOAD_MINUTES, "--max-upload-minutes",
                                             help="Longest uploaded recording accepted."),
    max_take_minutes: float = typer.Option(serve.MAX_TAKE_MINUTES, "--max-take-minutes",
                                           help="A recording stops (and is saved) after this long."),
    certfile: Optional[Path] = typer.Option(None, "--certfile", help="Serve https with this PEM certificate "
                                            "(browsers allow the microphone on other machines only over https)."),
    keyfile: Optional[Path] = typer.Option(None, "--keyfile", help="The certificate's private key (PEM), "
                                           "unless --certfile holds it."),
) -> None:
    """Record, watch and download the score in the browser: a local web app around `listen` and
    `transcribe` (same engine, same outputs). Takes are journaled like `listen`'s."""
    from pianonotes.serve import app as web
    from pianonotes.serve import core, server

    out = console()
    if not host.strip():  # "" binds every interface: that must be asked for by name
        raise fail("--host is empty; pass --host 127.0.0.1 (this machine only) or --host 0.0.0.0 (every "
                   "interface) explicitly")
    if not 0 <= port <= 65535:
        raise fail("--port must be between 0 and 65535")
    for name, value in (("--max-upload-mb", max_upload_mb), ("--max-upload-minutes", max_upload_minutes),
                        ("--max-take-minutes", max_take_minutes)):
        if not 0 < value < float("inf"):  # NaN and inf too
            raise fail(f"{name} must be a positive number")
    if keyfile is not None and certfile is None:
        raise fail("--keyfile needs --certfile")
    for name, f in (("--certfile", certfile), ("--keyfile", keyfile)):
        if f is not None and not f.is_file():
            raise fail(f"{name} {f}: no such file")
    loopback = web.is_loopback(host)
    token = None if loopback else secrets.token_urlsafe(18)
    limits = core.Limits(max_upload_bytes=int(max_upload_mb * 1e6), max_upload_seconds=max_upload_minutes * 60,
                         max_take_seconds=max_take_minutes * 60)
    try:
        sock = server.bind(host, port)
        with out.status("loading the model..."):
            m = core.load_model(model)
        application = web.create_app(m, bind_host=host, token=token, limits=limits)
        srv = server.make_server(application, sock, certfile=str(certfile) if certfile else None,
                                 keyfile=str(keyfile) if keyfile else None)
    except PianonotesError as exc:
        raise fail(str(exc))
    bound_port = sock.getsockname()[1]
    shown = ("localhost" if host in ("127.0.0.1", "localhost") else f"[{host}]" if ":" in host else host)
    if host in ("0.0.0.0", "::"):
        import socket

        shown = socket.gethostname()
    url = f"{'https' if certfile else 'http'}://{shown}:{bound_port}/" + (f"?token={token}" if token else "")
    if not loopback:
        console(stderr=True).print(
            f"[bold yellow]warning:[/] listening on {host}: anyone on the network who has the token can record "
            "and download takes." + ("" if certfile else " Browsers allow the microphone only on https or "
                                     "localhost pages: without --certfile, other machines can only upload."),
            markup=True, soft_wrap=True)
    out.print(f"pianonotes serve: {url}  (model {m.path.stem}; Ctrl-C stops)", soft_wrap=True, markup=False)
    if not no_browser and loopback:
        def opener() -> None:
            import time
            import webbrowser

            while not srv.started and not srv.should_exit:
                time.sleep(0.05)
            if srv.started:
                webbrowser.open(url)

        threading.Thread(target=opener, daemon=True).start()
    try:
        srv.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    out.print("stopped; takes are kept in the cache (pianonotes recover rebuilds an interrupted one)")


def register(app: typer.Typer) -> None:
    """Add ``serve`` to ``app`` (a no-op when it is already there)."""
    names = {c.name or (c.callback.__name__ if c.callback else None) for c in app.registered_commands}
    if "serve" not in names:
        app.command("serve")(serve)
