"""The Starlette application: routes, the recording WebSocket, and the safety checks.

Starlette rather than Flask: the recording endpoint is a long-lived, two-way WebSocket (audio in, the
live view out, every 50 ms) beside ordinary requests, and Starlette + uvicorn do that natively on one
asyncio loop; the model work runs in threads (the LiveSession worker, the thread pool for uploads
and engraving), so the loop only moves bytes.

Safety: on a loopback address every request must carry a loopback ``Host`` header (no DNS rebinding);
otherwise a random token is required on every route (``?token=`` or ``X-Pianonotes-Token``). A WebSocket
or POST whose ``Origin`` is not this server's own is refused. Request bodies over the upload limit are
refused before they are read. File names and ids from the client are never used as paths.
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketState

from pianonotes.errors import PianonotesError
from pianonotes.serve import OUTPUT_FORMATS, core

STATIC = Path(__file__).resolve().parent / "static"
STATIC_FILES = {  # the only files the server reads on a client's behalf, by fixed name
    "app.js": "text/javascript; charset=utf-8",
    "worklet.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}


def is_loopback(host: str) -> bool:
    import ipaddress

    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Guard:
    """Host, token and origin checks shared by HTTP routes and the WebSocket."""

    def __init__(self, *, bind_host: str, token: str | None):
        self.loopback = is_loopback(bind_host)
        self.token = token

    def _host_ok(self, headers) -> bool:
        if not self.loopback:
            return True
        host = headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in LOOPBACK_NAMES

    def _token_ok(self, query, headers) -> bool:
        if self.token is None:
            return True
        given = query.get("token") or headers.get("x-pianonotes-token") or ""
        return secrets.compare_digest(given.encode(), self.token.encode())

    def origin_ok(self, headers) -> bool:
        origin = headers.get("origin")
        if origin is None:  # not a browser (a browser always sends Origin on WebSocket and POST)
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc == headers.get("host", "")

    def check(self, conn, *, origin: bool = False, token: bool = True) -> str | None:
        """None when the request may go on, else why not. The page and its scripts need no token (they
        hold nothing private); every API route and the WebSocket do."""
        if not self._host_ok(conn.headers):
            return "this server only answers requests addressed to localhost"
        if token and not self._token_ok(conn.query_params, conn.headers):
            return "missing or wrong token: open the address `pianonotes serve` printed"
        if origin and not self.origin_ok(conn.headers):
            return "cross-origin request refused"
        return None


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(model: core.Model, *, bind_host: str = "127.0.0.1", token: str | None = None,
               limits: core.Limits = core.Limits()) -> Starlette:
    """The web app around one loaded model (see :func:`pianonotes.serve.core.load_model`)."""
    guard = Guard(bind_host=bind_host, token=token)
    store = core.TakeStore(model)

    def guarded(handler, *, origin: bool = False, token: bool = True):
        async def wrapper(request: Request):
            why = guard.check(request, origin=origin, token=token)
            if why:
                return _error(why, 403)
            try:
                return await handler(request)
            except PianonotesError as exc:
                return _error(str(exc), 404 if str(exc).startswith("no take") else 400)
        return wrapper

    async def index(request: Request):
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-store"})

    async def static(request: Request):
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return _error("not found", 404)
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})

    async def info(request: Request):
        return JSONResponse({
            "model": model.path.stem, "sample_rate": model.sample_rate, "lookahead_ms": model.lookahead_ms,
            "formats": list(OUTPUT_FORMATS), "max_upload_bytes": limits.max_upload_bytes,
            "max_upload_seconds": limits.max_upload_seconds, "max_take_seconds": limits.max_take_seconds,
            "recording": core.live_recordings()})

    async def takes(request: Request):
        return JSONResponse({"takes": await run_in_threadpool(store.list)})

    async def take(request: Request):
        take_id = request.path_params["take"]

        def get():
            folder = store.folder(take_id)
            data = store.info(folder)
            data["notes_list"] = core.take_notes(store, take_id) if "json" in data["downloads"] else []
            return data

        return JSONResponse(await run_in_threadpool(get))

    async def download(request: Request):
        path, media, name = store.output(request.path_params["take"], request.path_params["fmt"])
        return FileResponse(path, media_type=media, filename=name)

    async def score(request: Request):
        try:
            page = int(request.path_params["page"])
        except ValueError:
            return _error("page must be a number")
        path, media, _ = store.output(request.path_params["take"], "svg", page=max(1, page))
        return FileResponse(path, media_type=media, headers={"Cache-Control": "no-cache"})

    async def recover(request: Request):
        return JSONResponse(await run_in_threadpool(store.recover, request.path_params["take"]))

    async def upload(request: Request):
        name = core.display_name(unquote(request.headers.get("x-filename", "")))
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limits.max_upload_bytes:
            return _error(f"{name} is {int(length) / 1e6:.0f} MB; the upload limit is "
                          f"{limits.max_upload_bytes / 1e6:g} MB", 413)
        folder = core.upload_dir()
        try:
            body = folder / ("upload" + core.upload_suffix(name))
            size = 0
            with open(body, "wb") as fh:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limits.max_upload_bytes:
                        return _error(f"{name} is larger than the upload limit of "
                                      f"{limits.max_upload_bytes / 1e6:g} MB", 413)
                    fh.write(chunk)
            if size == 0:
                return _error(f"{name} is empty (0 bytes); choose an audio file")
            return JSONResponse(await run_in_threadpool(core.transcribe_upload, store, body, name, limits=limits))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    async def record(ws: WebSocket):
        why = guard.check(ws, origin=True)
        if why:
            await ws.close(code=1008, reason=why[:120])
            return
        await ws.accept()
        await _record(ws, store, model, limits)

    routes = [
        Route("/", guarded(index, token=False)),
        Route("/static/{name}", guarded(static, token=False)),
        Route("/api/info", guarded(info)),
        Route("/api/takes", guarded(takes)),
        Route("/api/takes/{take}", guarded(take)),
        Route("/api/takes/{take}/download/{fmt}", guarded(download)),
        Route("/api/takes/{take}/score/{page}", guarded(score)),
        Route("/api/takes/{take}/recover", guarded(recover, origin=True), methods=["POST"]),
        Route("/api/upload", guarded(upload, origin=True), methods=["POST"]),
        WebSocketRoute("/ws/record", record),
    ]

    async def server_error(request, exc):
        return _error(f"internal error: {type(exc).__name__}: {exc}", 500)

    app = Starlette(routes=routes, exception_handlers={500: server_error})
    app.state.store = store
    app.state.guard = guard
    return app


async def _send(ws: WebSocket, data: dict) -> bool:
    if ws.application_state != WebSocketState.CONNECTED or ws.client_state != WebSocketState.CONNECTED:
        return False
    try:
        await ws.send_text(json.dumps(data, separators=(",", ":")))
        return True
    except Exception:  # the client went away
        return False


async def _record(ws: WebSocket, store: core.TakeStore, model: core.Model, limits: core.Limits) -> None:
    """One socket of a take.

    The page sends ``{"type": "start", "sample_rate", "format", "title"}`` (or, reconnecting after a
    dropped socket, ``{"type": "resume", "take", "key"}``), then binary PCM blocks, then
    ``{"type": "stop"}``. The server answers ``ready`` (with the take id, its resume key and the
    samples it has received: a resuming page sends again from there), ``update`` messages, and ``done``
    with the take. A socket that drops without a stop leaves the take waiting ``resume_seconds`` for the
    page; after that the take is finished and saved as interrupted.
    """
    try:
        start = json.loads(await ws.receive_text())
        kind = start.get("type") if isinstance(start, dict) else None
        if kind == "resume":
            rec, generation = core.resume(str(start.get("take", "")), str(start.get("key", "")))
            old, rec.socket = rec.socket, ws
            if old is not None:  # a socket the server had not yet seen die: it no longer owns the take
                try:
                    await old.close(code=4000)
                except Exception:
                    pass
        elif kind == "start":
            rec = await run_in_threadpool(lambda: core.Recording(
                store, sample_rate=start.get("sample_rate"), fmt=str(start.get("format", "f32le")),
                title=str(start.get("title") or ""), limits=limits))
            generation, rec.socket = rec.generation, ws
        else:
            raise PianonotesError('the first message must be {"type": "start", "sample_rate": ...}')
    except (PianonotesError, ValueError, KeyError) as exc:
        msg = str(exc) if isinstance(exc, PianonotesError) else f"bad start message: {exc}"
        await _send(ws, {"type": "error", "message": msg})
        await ws.close(code=1008)
        return
    except Exception:  # disconnected before starting
        return
    await _send(ws, {"type": "ready", "take": rec.id, "key": rec.resume_key, "resumed": generation > 0,
                     "received": rec.received_samples, "sample_rate": rec.sample_rate,
                     "client_sample_rate": rec.client_rate, "lookahead_ms": model.lookahead_ms})
    outcome, error = await _pump(ws, rec, generation)
    if not rec.owns(generation):  # a reconnected page took the take over
        return
    if outcome == "dropped":
        rec.detach(generation)
        if await anyio.to_thread.run_sync(rec.wait_resumed, generation):
            return
    else:
        rec.mark_ending()
    rec.end()
    await anyio.to_thread.run_sync(rec.session.wait, 120)
    interrupted = outcome == "dropped"
    if error:
        await _send(ws, {"type": "error", "message": error + "; the take so far is saved"})
    try:
        info = await run_in_threadpool(rec.finish, interrupted=interrupted)
    except PianonotesError as exc:
        await _send(ws, {"type": "error", "message": str(exc)})
        info = None
    if info is not None and not interrupted:
        info["notes_list"] = core.take_notes(store, rec.id) if "json" in info["downloads"] else []
        await _send(ws, {"type": "done", "take": info})
    if ws.client_state == WebSocketState.CONNECTED and ws.application_state == WebSocketState.CONNECTED:
        try:
            await ws.close()
        except Exception:
            pass


async def _pump(ws: WebSocket, rec: core.Recording, generation: int) -> tuple[str, str | None]:
    """Audio in, the live view out, until the page stops ("stopped"), the socket drops ("dropped"), the
    take reaches its length limit ("limit") or a message is bad ("error", with the message)."""
    running = True
    outcome, error = "dropped", None

    async def sender() -> None:
        while True:
            final = not running
            await anyio.to_thread.run_sync(rec.wait_update, 0.05)
            if not rec.owns(generation):
                return
            msg = rec.poll()
            if msg is not None:
                if not await _send(ws, msg):
                    return
                rec.mark_shown()
            if final:
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        try:
            while True:
                if rec.done:
                    outcome = "limit"
                    break
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect" or not rec.owns(generation):
                    break
                if msg.get("bytes") is not None:
                    rec.feed(msg["bytes"])
                elif msg.get("text") is not None:
                    ctl = json.loads(msg["text"])
                    if isinstance(ctl, dict) and ctl.get("type") == "stop":
                        outcome = "stopped"
                        break
        except PianonotesError as exc:
            outcome, error = "error", str(exc)
        except ValueError as exc:
            outcome, error = "error", f"bad control message: {exc}"
        except Exception:  # the connection failed
            outcome = "dropped"
        finally:
            if outcome == "dropped":
                tg.cancel_scope.cancel()
            else:  # the take ends here: let the sender pass on its last notes
                rec.mark_ending()
                rec.end()
                await anyio.to_thread.run_sync(rec.session.wait, 120)
            running = False
    return outcome, error
