"""The studio's web server: the static page and a JSON API under ``/api/`` (docs/studio.md).

Like ``cli/`` for the shell: each handler parses a request, calls the project, the frame store
or the library, and turns a UserError into a 4xx answer with a one-line ``{"error": ...}``.

Security, as Jupyter Server does it: a random token on every request (``?token=`` in the
printed URL, then a cookie, or the ``X-Studio-Token`` header); requests that change anything
must carry the header (a cross-site form cannot set it); the Host header must name this machine
(DNS rebinding); request paths carry only integers (frame numbers, object ids) and every file
name is made by the server; bodies have a size limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import socket
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from seggpt_video.errors import UserError
from seggpt_video.io.atomic import partial_path
from seggpt_video.io.masks import read_mask
from seggpt_video.studio.frames import FrameStore
from seggpt_video.studio.jobs import EventLog, Propagation
from seggpt_video.studio.project import Conflict, NotFound, Project
from seggpt_video.studio.tools import apply_edit, render_overlay

MAX_UPLOAD_BYTES = 32 * 1024 * 1024  # a mask PNG; a 4K RGB PNG is under 25 MB
MAX_JSON_BYTES = 4 * 1024 * 1024  # brush strokes
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
TOKEN_HEADER = "x-studio-token"
SAFE_METHODS = frozenset({"GET", "HEAD"})
EVENT_POLL_SECONDS = 0.1
STATIC = files("seggpt_video.studio") / "static"


class TooLarge(UserError):
    """A request body over the limit (413)."""


@dataclass
class StudioConfig:
    """Everything the server is started with.

    model_options: the `run` options that reproduce the segmenter (shown in the command).
    host: the address bound (its name is an allowed Host); allow_hosts: more allowed names
    (a reverse proxy's).
    """

    video: Path
    out: Path
    segmenter: object  # seggpt_video.api.VideoSegmenter
    model_options: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    allow_hosts: list[str] = field(default_factory=list)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    backend: str = "auto"
    warm_up: bool = True


class Studio:
    """The running studio: frame store, project, propagation; shared by every request."""

    def __init__(self, config: StudioConfig) -> None:
        self.config = config
        self.store = FrameStore(config.video, config.backend)
        self.project = Project(config.out, config.video, self.store.height, self.store.width)
        self.events = EventLog()
        self.propagation = Propagation(
            self.project, self.store, config.segmenter, config.examples, self.events
        )
        if self.store.info is not None:
            self.project.set_info(self.store.info)

    def info_ready(self) -> bool:
        """Whether the frames are counted (and the project told); never blocks."""
        info = self.store.info
        if info is not None and self.project.info is None:
            self.project.set_info(info)
        return self.project.info is not None

    def session(self) -> dict:
        self.info_ready()
        project, store = self.project, self.store
        info = project.info
        with project.lock:
            return {
                "video": {
                    "path": str(self.config.video),
                    "name": info.name if info else self.config.video.stem,
                    "width": store.width,
                    "height": store.height,
                    "fps": info.fps if info else None,
                    "num_frames": info.num_frames if info else None,
                    "frame_names": list(info.frame_names) if info else None,
                    "ready": info is not None,
                    "error": store.error,
                    "warnings": store.warnings,
                },
                "objects": [vars(o) for o in sorted(project.objects.values(), key=lambda o: o.id)],
                "annotations": project.annotated_frames(),
                "stale_from": project.stale_from,
                "formats": project.formats,
                "status": self.status(),
                "command": self.command(),
                "events": self.events.last,
            }

    def status(self) -> dict:
        return {**self.propagation.state, "running": self.propagation.running}

    def command(self, formats: list[str] | None = None) -> str:
        return self.project.command(self.config.model_options, formats, self.config.examples)


# --- security -----------------------------------------------------------------------------------


def allowed_hosts(host: str, extra: list[str]) -> frozenset[str]:
    """Host names a request may carry: localhost's, the bound address, and (bound to every
    interface) this machine's names and addresses; plus `extra` (a reverse proxy's name)."""
    names = set(LOCAL_HOSTS) | {h.lower().strip("[]") for h in extra}
    if host in ("0.0.0.0", "::", ""):
        for name in (socket.gethostname(), socket.getfqdn()):
            names.add(name.lower())
            try:
                names.update(str(a[4][0]) for a in socket.getaddrinfo(name, None))
            except OSError:
                pass
    else:
        names.add(host.lower().strip("[]"))
    return frozenset(names)


def host_name(header: str) -> str:
    """The name in a Host header, without port or IPv6 brackets: '[::1]:80' -> '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware: Host check, then the token; sets the cookie when ?token= is right."""

    def __init__(self, app, token: str, hosts: frozenset[str]) -> None:
        self.app, self.token, self.hosts = app, token, hosts
        self.cookie = f"seggpt_studio_{secrets.token_hex(4)}"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if host_name(headers.get("host", "")) not in self.hosts:
            await _refuse(scope, receive, send, "the Host header names another server")
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        in_query = (query.get("token") or [""])[0]
        in_header = headers.get(TOKEN_HEADER, "")
        in_cookie = _cookies(headers.get("cookie", "")).get(self.cookie, "")
        method = scope.get("method", "GET")
        if method in SAFE_METHODS:
            given = [in_query, in_header, in_cookie]
        else:  # a cookie alone is what a cross-site request would carry
            given = [in_query, in_header]
        if not any(value and hmac.compare_digest(value, self.token) for value in given):
            await _refuse(
                scope,
                receive,
                send,
                "open the URL printed by `seggpt-video studio` (it carries ?token=...)",
            )
            return
        if in_query and not in_cookie:
            send = self._setting_cookie(send)
        await self.app(scope, receive, send)

    def _setting_cookie(self, send):
        cookie = f"{self.cookie}={self.token}; HttpOnly; SameSite=Strict".encode("latin-1")

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (b"set-cookie", cookie)]}
            await send(message)

        return sending


async def _refuse(scope, receive, send, message: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await JSONResponse({"error": message}, status_code=403)(scope, receive, send)


def _cookies(header: str) -> dict[str, str]:
    cookies = {}
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            cookies[name] = value
    return cookies


# --- request helpers ----------------------------------------------------------------------------


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused past `limit` bytes (by its length header, or while reading)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the request body is {int(declared)} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _json(request: Request) -> dict:
    body = await _body(request, MAX_JSON_BYTES)
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise UserError(f"the request body is not JSON ({error})") from None
    if not isinstance(value, dict):
        raise UserError("the request body must be a JSON object")
    return value


def _width(request: Request) -> int | None:
    text = request.query_params.get("width")
    if text is None:
        return None
    if not text.isdigit():
        raise UserError(f"width {text!r}: expected a whole number of pixels")
    return int(text)


def _int_field(body: dict, name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise UserError(f"{name}: expected a whole number")
    return value


# --- handlers -----------------------------------------------------------------------------------


def build_app(studio: Studio) -> Starlette:
    """The ASGI app for one studio (wrapped in the Guard)."""
    project, store = studio.project, studio.store

    def checked_frame(request: Request) -> int:
        studio.info_ready()
        return project.check_frame(request.path_params["frame"])

    def refuse_while_running() -> None:
        if studio.propagation.running:
            raise Conflict("a propagation is running: cancel it or wait before editing")

    async def page(request: Request) -> Response:
        return Response((STATIC / "index.html").read_bytes(), media_type="text/html")

    async def session(request: Request) -> Response:
        return JSONResponse(studio.session())

    def frame_jpeg(request: Request) -> Response:
        frame = checked_frame(request)
        data = store.jpeg(frame, _width(request))
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def objects(request: Request) -> Response:
        if request.method == "POST":
            body = await _json(request)
            obj = project.add_object(body.get("name"), body.get("colour"))
            return JSONResponse(vars(obj), status_code=201)
        return JSONResponse([vars(o) for o in sorted(project.objects.values(), key=lambda o: o.id)])

    async def one_object(request: Request) -> Response:
        object_id = request.path_params["object_id"]
        if request.method == "DELETE":
            refuse_while_running()
            project.remove_object(object_id)
            return JSONResponse({"removed": object_id})
        body = await _json(request)
        obj = project.update_object(object_id, body.get("name"), body.get("colour"))
        return JSONResponse(vars(obj))

    async def annotations(request: Request) -> Response:
        return JSONResponse({"frames": project.annotated_frames()})

    async def annotation_png(request: Request) -> Response:
        frame = checked_frame(request)
        if request.method == "PUT":
            refuse_while_running()
            body = await _body(request, MAX_UPLOAD_BYTES)
            labels = await asyncio.to_thread(_read_upload, project, body)
            project.set_annotation(frame, labels, new_objects=True)
            return JSONResponse(_annotation_answer(studio, frame))
        if request.method == "DELETE":
            refuse_while_running()
            with project.lock:
                if project.annotation(frame) is None:
                    raise NotFound(f"frame {frame}: no annotation")
                project.set_annotation(frame, np.zeros((store.height, store.width), np.uint8))
            return JSONResponse(_annotation_answer(studio, frame))
        path = project.annotation_path(frame)
        if not path.exists():
            raise NotFound(f"frame {frame}: no annotation")
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def edit(request: Request) -> Response:
        frame = checked_frame(request)
        refuse_while_running()
        body = await _json(request)

        def work() -> None:
            with project.lock:
                labels = project.annotation(frame)
                if labels is None:  # a correction starts from what propagation made
                    labels = project.result(frame)
                if labels is None:
                    labels = np.zeros((store.height, store.width), dtype=np.uint8)
                operations = body.get("operations")
                boxes = isinstance(operations, list) and any(
                    isinstance(op, dict) and op.get("tool") == "box" for op in operations
                )
                image = store.frame(frame) if boxes else None  # only GrabCut needs the pixels
                edited = apply_edit(labels, image, operations, set(project.objects))
                project.set_annotation(frame, edited)

        await asyncio.to_thread(work)
        return JSONResponse(_annotation_answer(studio, frame))

    async def undo(request: Request) -> Response:
        frame = checked_frame(request)
        refuse_while_running()
        if not project.undo(frame):
            raise Conflict(f"frame {frame}: nothing to undo")
        return JSONResponse(_annotation_answer(studio, frame))

    async def result_png(request: Request) -> Response:
        frame = checked_frame(request)
        if project.info is None or not project.result_path(frame).exists():
            raise NotFound(f"frame {frame}: not propagated yet")
        return FileResponse(project.result_path(frame), media_type="image/png",
                            headers={"Cache-Control": "no-store"})  # fmt: skip

    def overlay_png(request: Request) -> Response:
        frame = checked_frame(request)
        source = request.query_params.get("source", "auto")
        if source not in ("auto", "annotation", "result"):
            raise UserError(f"source {source!r}: expected auto, annotation or result")
        labels = None
        if source in ("auto", "annotation"):
            labels = project.annotation(frame)
        if labels is None and source in ("auto", "result"):
            labels = project.result(frame)
        if labels is None:
            return Response(status_code=204)
        colours = {o.id: o.colour for o in project.objects.values()}
        data = render_overlay(labels, colours, store.display_width(_width(request)))
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    async def areas(request: Request) -> Response:
        studio.info_ready()
        count = project.num_frames or 0
        with project.lock:
            table = {
                str(o): [project.areas.get(f, {}).get(o, 0) if f in project.areas else None
                         for f in range(count)]
                for o in sorted(project.objects)
            }  # fmt: skip
        return JSONResponse({"num_frames": count, "area_pixels": table})

    async def propagate(request: Request) -> Response:
        await _json(request)
        return JSONResponse(studio.propagation.start("propagate"), status_code=202)

    async def export(request: Request) -> Response:
        body = await _json(request)
        formats = body.get("formats")
        if not isinstance(formats, list) or not all(isinstance(f, str) for f in formats):
            raise UserError('formats: expected a list of format names, e.g. ["davis", "matte"]')
        return JSONResponse(studio.propagation.start("export", formats), status_code=202)

    async def cancel(request: Request) -> Response:
        return JSONResponse({"cancelled": studio.propagation.cancel()})

    async def status(request: Request) -> Response:
        return JSONResponse(studio.status())

    async def command(request: Request) -> Response:
        return JSONResponse({"command": studio.command()})

    async def events(request: Request) -> Response:
        after = request.query_params.get("after", "0")
        seen = int(after) if after.isdigit() else 0
        header = request.headers.get("last-event-id", "")
        seen = int(header) if header.isdigit() else seen

        async def stream():
            nonlocal seen
            quiet = 0.0
            yield "retry: 1000\n\n"
            while not shutting_down.is_set():
                batch = studio.events.since(seen)
                for number, event in batch:
                    seen = number
                    yield f"id: {number}\ndata: {json.dumps(event)}\n\n"
                if batch:
                    quiet = 0.0
                else:
                    quiet += EVENT_POLL_SECONDS
                    if quiet >= 15:  # keeps proxies from closing an idle stream
                        quiet = 0.0
                        yield ": keep-alive\n\n"
                await asyncio.sleep(EVENT_POLL_SECONDS)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def user_error(request: Request, error: Exception) -> Response:
        code = 400
        if isinstance(error, NotFound):
            code = 404
        elif isinstance(error, Conflict):
            code = 409
        elif isinstance(error, TooLarge):
            code = 413
        return JSONResponse({"error": str(error)}, status_code=code)

    async def http_error(request: Request, error: HTTPException) -> Response:
        return JSONResponse({"error": error.detail}, status_code=error.status_code)

    shutting_down = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if studio.config.warm_up:
            studio.propagation.warm_up()
        yield
        shutting_down.set()
        await asyncio.to_thread(studio.propagation.shutdown)
        studio.store.close()

    routes = [
        Route("/", page),
        Route("/api/session", session),
        Route("/api/frames/{frame:int}.jpg", frame_jpeg),
        Route("/api/objects", objects, methods=["GET", "POST"]),
        Route("/api/objects/{object_id:int}", one_object, methods=["PATCH", "DELETE"]),
        Route("/api/annotations", annotations),
        Route("/api/annotations/{frame:int}.png", annotation_png, methods=["GET", "PUT", "DELETE"]),
        Route("/api/annotations/{frame:int}/edit", edit, methods=["POST"]),
        Route("/api/annotations/{frame:int}/undo", undo, methods=["POST"]),
        Route("/api/results/{frame:int}.png", result_png),
        Route("/api/overlay/{frame:int}.png", overlay_png),
        Route("/api/areas", areas),
        Route("/api/propagate", propagate, methods=["POST"]),
        Route("/api/export", export, methods=["POST"]),
        Route("/api/cancel", cancel, methods=["POST"]),
        Route("/api/status", status),
        Route("/api/command", command),
        Route("/api/events", events),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={UserError: user_error, HTTPException: http_error},
        lifespan=lifespan,
    )
    return app


def create_app(config: StudioConfig):
    """The studio for `config`, ready for uvicorn or a test client (token and Host checked)."""
    studio = Studio(config)
    app = build_app(studio)
    app.state.studio = studio
    guarded = Guard(app, config.token, allowed_hosts(config.host, config.allow_hosts))
    guarded.studio = studio
    return guarded


def _read_upload(project: Project, body: bytes) -> np.ndarray:
    """An uploaded mask, read exactly as --mask reads a file; (H, W) uint8 ids of the video's size.

    The bytes go to a hidden temporary file under OUT (the server writes nowhere else), which is
    removed at once.
    """
    if not body:
        raise UserError("the request body is empty; send the mask PNG as the body")
    temporary = partial_path(project.out / "upload.png")
    try:
        temporary.write_bytes(body)
        try:
            labels = read_mask(temporary)
        except UserError as error:  # the message names the temporary file: name the upload
            raise UserError(str(error).replace(str(temporary), "the uploaded mask")) from None
    finally:
        temporary.unlink(missing_ok=True)
    if labels.shape != (project.height, project.width):
        raise UserError(
            f"the uploaded mask is {labels.shape[1]}x{labels.shape[0]} but the video is "
            f"{project.width}x{project.height} (width x height)"
        )
    return labels


def _annotation_answer(studio: Studio, frame: int) -> dict:
    project = studio.project
    labels = project.annotation(frame)
    areas = {}
    if labels is not None:
        counts = np.bincount(labels.ravel(), minlength=256)
        areas = {str(i): int(counts[i]) for i in np.flatnonzero(counts[1:]) + 1}
    return {
        "frame": frame,
        "annotated": labels is not None,
        "areas": areas,
        "annotations": project.annotated_frames(),
        "objects": [vars(o) for o in sorted(project.objects.values(), key=lambda o: o.id)],
        "stale_from": project.stale_from,
        "command": studio.command(),
    }
