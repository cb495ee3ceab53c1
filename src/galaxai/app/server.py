"""The app's HTTP face: a FastAPI application over :class:`galaxai.app.engine.Engine`.

Resources are addressed by registered ids only (runs, checkpoint iterations, image sets, image
indices); images and maps are PNG with an ``ETag`` and, when the request names the checkpoint's
version (``?v=``, as the page does), ``Cache-Control: immutable``. Unknown ids, malformed input and
oversized uploads are answered with 4xx and a message saying what was wrong. The Units view's
endpoints (layers, unit tables, galleries, ``POST …/interventions`` with the dissection
intervention JSON) live in :mod:`galaxai.app.units`. The OpenAPI schema is at ``/openapi.json``
and browsable at ``/docs``.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Body, FastAPI, File, HTTPException, Path as PathParam, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

import galaxai
from galaxai.app.engine import Engine
from galaxai.app.registry import IMAGE_KINDS, Registry, UnknownIdError
from galaxai.app.units import LAYER_PATTERN, Units
from galaxai.choices import (COMPARED_METHODS, DIVERGING_CMAPS, MAP_POLARITIES, SEQUENTIAL_CMAPS,
                             STRETCHES)
from galaxai.dissect import MODES, Intervention

__all__ = ["create_app", "MAX_UPLOAD_BYTES", "MAX_UPLOAD_PIXELS", "STATIC_DIR"]

STATIC_DIR = Path(__file__).parent / "static"
#: Largest accepted upload (bytes) and stamp side (pixels).
MAX_UPLOAD_BYTES = 4 * 1024 * 1024
MAX_UPLOAD_PIXELS = 512
_UPLOAD_SUFFIXES = (".fits", ".fit", ".fts", ".png", ".jpg", ".jpeg")
_ID = r"^[A-Za-z0-9_-]{1,80}$"

Kind = Literal[IMAGE_KINDS]  # type: ignore[valid-type]
Method = Literal[COMPARED_METHODS]  # type: ignore[valid-type]
Polarity = Literal[MAP_POLARITIES]  # type: ignore[valid-type]
Stretch = Literal[STRETCHES]  # type: ignore[valid-type]
Cmap = Literal[SEQUENTIAL_CMAPS + DIVERGING_CMAPS]  # type: ignore[valid-type]


class CheckpointInfo(BaseModel):
    iteration: int
    version: str = Field(description="Short hash of the weights; pass as ?v= for immutable URLs")


class RunInfo(BaseModel):
    id: str
    name: str
    image_size: int
    checkpoints: list[CheckpointInfo]


class ImageSetInfo(BaseModel):
    id: str
    name: str
    n: int
    has_truth: bool
    kinds: list[str]


class MethodInfo(BaseModel):
    key: str
    label: str


class Options(BaseModel):
    methods: list[MethodInfo]
    kinds: list[str]
    polarities: list[str]
    stretches: list[str]
    sequential_cmaps: list[str]
    diverging_cmaps: list[str]
    max_upload_bytes: int
    version: str


class Summary(BaseModel):
    p_real: dict[str, float] = Field(description="D's probability that each image is real")
    psnr_db: dict[str, float] | None = Field(description="PSNR of output a/b against its truth")


class Stats(BaseModel):
    records: list[dict[str, Any]]


class LayerInfo(BaseModel):
    name: str
    units: int


class UnitRow(BaseModel):
    unit: int
    threshold: float | None = Field(description="t_u: the unit is 'on' where its activation exceeds it")
    label: str = Field(description="the concept with the highest IQR")
    iou: float | None
    iqr: float | None
    interpretable: bool
    value: float | None = Field(description="0.99 quantile of the unit's activations: a level "
                                            "to insert it at")


class UnitTable(BaseModel):
    layer: str
    concepts: str = Field(description="where the concept masks come from: truth, or the flux "
                                      "segmenter on the targets or on the blend")
    threshold_images: int
    dissection_images: int
    units: list[UnitRow]


class ProgressInfo(BaseModel):
    task: str | None = Field(description="what the server is computing now (None: idle)")
    done: int
    total: int


_Alpha = Annotated[float, Field(ge=0, le=1)]
_Value = Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]
_MaskRow = Annotated[list[Annotated[float, Field(ge=0, le=1)]], Field(min_length=1, max_length=512)]


class InterventionBody(BaseModel):
    """The dissection intervention JSON: r′ = r ⊙ (1 − a) + a ⊙ v at ``layer`` on ``units``."""

    model_config = ConfigDict(extra="forbid")
    layer: str = Field(max_length=200, description="a layer of GET …/layers (root.0, trunk, …)")
    units: list[Annotated[int, Field(ge=0)]] = Field(min_length=1, max_length=4096)
    mode: Literal[MODES] = "ablate"  # type: ignore[valid-type]
    alpha: _Alpha | list[_Alpha] = Field(default=1.0, description="a: one value or one per unit")
    value: _Value | list[_Value] | None = Field(
        default=None, description="v: omitted for ablate, required for insert")
    mask: list[_MaskRow] | None = Field(default=None, min_length=1, max_length=512,
                                        description="region P in [0, 1]; omitted: everywhere")


class InterventionResult(BaseModel):
    interventions: list[dict[str, Any]] = Field(description="what was applied, normalised")
    concepts: str
    before: dict[str, str] = Field(description="output_a / output_b as PNG data URLs")
    after: dict[str, str]
    share_removed: dict[str, float | None] = Field(
        description="per region concept, the share of its flux removed from its branch")
    leak: dict[str, float | None] | None
    dpsnr_db: dict[str, float | None] | None = Field(description="ΔPSNR per branch (truth known)")
    dssim: dict[str, float | None] | None


class ViewState(BaseModel):
    """The page's state: what the URL encodes and what export/import exchange as JSON."""

    model_config = ConfigDict(extra="forbid")
    view: Literal["explain", "deblend", "training", "units"] = "explain"
    run: str = Field(pattern=_ID)
    iteration: int | None = Field(default=None, ge=0)
    compare: int | None = Field(default=None, ge=0, description="second checkpoint (blink/swipe)")
    mode: Literal["grid", "blink", "swipe"] = "grid"
    images: str = Field(default="simulated", pattern=_ID)
    index: int = Field(default=0, ge=0)
    methods: list[Method] = Field(default_factory=lambda: list(COMPARED_METHODS))  # type: ignore[valid-type]
    polarity: Polarity = "auto"  # type: ignore[valid-type]
    stretch: Stretch = "asinh"  # type: ignore[valid-type]
    cmap: Cmap = "viridis"  # type: ignore[valid-type]
    smooth: bool = False
    layer: str | None = Field(default=None, pattern=LAYER_PATTERN, description="Units: the layer")
    unit: int | None = Field(default=None, ge=0, description="Units: the unit in the gallery")
    sort: Literal["unit", "label", "iou", "iqr", "threshold"] = "iou"
    edit: Literal["ablate", "insert"] = "ablate"
    units: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list, max_length=4096,
                                                     description="Units: the edited units")
    alpha: float = Field(default=1.0, ge=0, le=1)


def _not_found(exc: Exception) -> HTTPException:
    return HTTPException(status_code=404, detail=str(exc).strip("'\""))


def create_app(registry: Registry, cache_dir: str | Path) -> FastAPI:
    """The FastAPI application serving ``registry``'s runs and image sets.

    Parameters
    ----------
    registry : Registry
        Runs and image sets registered at start-up (ids only cross the wire).
    cache_dir : path-like
        Folder of the on-disk relevance-map cache.
    """
    from galaxai.workflows import COMPARED_METHODS as LABELS

    engine = Engine(registry, cache_dir)
    units = Units(engine)
    app = FastAPI(title="galaxai app", version=galaxai.__version__,
                  description="Browse a deblender GAN's checkpoints, images, relevance maps "
                              "and its generator's units.")
    app.state.engine = engine
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_UPLOAD_BYTES + 65536):
            return JSONResponse(status_code=413, content={
                "detail": f"request body too large ({length} bytes); uploads are limited to "
                          f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MiB: send one stamp, cropped"})
        return await call_next(request)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    def run_info(run_id: str) -> RunInfo:
        run = registry.run(run_id)
        return RunInfo(id=run.id, name=run.path.name, image_size=run.image_size(),
                       checkpoints=[CheckpointInfo(iteration=c.iteration, version=c.digest[:12])
                                    for c in run.checkpoints()])

    @app.get("/api/runs", response_model=list[RunInfo], summary="Registered training runs")
    def runs() -> list[RunInfo]:
        return [run_info(r) for r in registry.runs]

    @app.get("/api/runs/{run_id}", response_model=RunInfo, summary="One run and its checkpoints",
             responses={404: {"description": "unknown run"}})
    def run(run_id: str = PathParam(pattern=_ID)) -> RunInfo:
        try:
            return run_info(run_id)
        except UnknownIdError as exc:
            raise _not_found(exc) from None

    @app.get("/api/runs/{run_id}/stats", response_model=Stats, summary="Records of stats.jsonl",
             responses={404: {"description": "unknown run"}})
    def stats(run_id: str = PathParam(pattern=_ID)) -> Stats:
        try:
            return Stats(records=registry.run(run_id).stats())
        except UnknownIdError as exc:
            raise _not_found(exc) from None

    def set_info(s) -> ImageSetInfo:
        return ImageSetInfo(id=s.id, name=s.name, n=len(s), has_truth=s.has_truth,
                            kinds=engine.kinds(s))

    @app.get("/api/images", response_model=list[ImageSetInfo], summary="Registered image sets")
    def image_sets() -> list[ImageSetInfo]:
        return [set_info(s) for s in registry.all_sets()]

    @app.get("/api/options", response_model=Options, summary="Methods and display choices")
    def options() -> Options:
        return Options(methods=[MethodInfo(key=k, label=LABELS[k][0]) for k in COMPARED_METHODS],
                       kinds=list(IMAGE_KINDS), polarities=list(MAP_POLARITIES),
                       stretches=list(STRETCHES), sequential_cmaps=list(SEQUENTIAL_CMAPS),
                       diverging_cmaps=list(DIVERGING_CMAPS), max_upload_bytes=MAX_UPLOAD_BYTES,
                       version=galaxai.__version__)

    base = "/api/runs/{run_id}/checkpoints/{iteration}/images/{set_id}/{index}"
    missing = {404: {"description": "unknown run, checkpoint, image set or image"}}

    def locate(run_id, iteration, set_id, index):
        try:
            return engine.locate(run_id, iteration, set_id, index)
        except UnknownIdError as exc:
            raise _not_found(exc) from None

    def png(request: Request, etag: str, make, version: str | None, checkpoint) -> Response:
        tag = f'"{etag}"'
        immutable = version is not None and version == checkpoint.digest[:12]
        headers = {"ETag": tag, "Cache-Control": "public, max-age=31536000, immutable" if immutable
                   else "no-cache"}
        if tag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        try:
            body = make()
        except LookupError as exc:
            raise _not_found(exc) from None
        return Response(body, media_type="image/png", headers=headers)

    png_response = {200: {"content": {"image/png": {}}, "description": "PNG image"}, **missing}

    @app.get(base + "/summary", response_model=Summary, responses=missing,
             summary="D's p(real) of each image and the outputs' PSNR")
    def summary(run_id: str = PathParam(pattern=_ID), iteration: int = PathParam(ge=0),
                set_id: str = PathParam(pattern=_ID), index: int = PathParam(ge=0)) -> Summary:
        checkpoint, images = locate(run_id, iteration, set_id, index)
        return Summary(**engine.summary(checkpoint, images, index))

    @app.get(base + "/{kind}.png", response_class=Response, responses=png_response,
             summary="One image (blend, truth or output) as PNG")
    def image(request: Request, run_id: str = PathParam(pattern=_ID),
              iteration: int = PathParam(ge=0), set_id: str = PathParam(pattern=_ID),
              index: int = PathParam(ge=0), kind: Kind = PathParam(),  # type: ignore[valid-type]
              stretch: Stretch = "asinh", v: str | None = Query(default=None, max_length=64)  # type: ignore[valid-type]
              ) -> Response:
        checkpoint, images = locate(run_id, iteration, set_id, index)
        if kind not in engine.kinds(images):
            raise HTTPException(404, f"image set {set_id!r} has no {kind} (it has no truth)")
        etag = engine.image_etag(checkpoint, images, index, kind, stretch)
        return png(request, etag, lambda: engine.image_png(checkpoint, images, index, kind, stretch),
                   v, checkpoint)

    @app.get(base + "/{kind}/maps/{method}.png", response_class=Response, responses=png_response,
             summary="D's relevance map of one image as PNG (computed once, then cached)")
    def relevance_map(request: Request, run_id: str = PathParam(pattern=_ID),
                      iteration: int = PathParam(ge=0), set_id: str = PathParam(pattern=_ID),
                      index: int = PathParam(ge=0), kind: Kind = PathParam(),  # type: ignore[valid-type]
                      method: Method = PathParam(),  # type: ignore[valid-type]
                      polarity: Polarity = "auto", cmap: Cmap = "viridis",  # type: ignore[valid-type]
                      v: str | None = Query(default=None, max_length=64)) -> Response:
        checkpoint, images = locate(run_id, iteration, set_id, index)
        if kind not in engine.kinds(images):
            raise HTTPException(404, f"image set {set_id!r} has no {kind} (it has no truth)")
        etag = engine.map_etag(checkpoint, images, index, kind, method, polarity, cmap)
        return png(request, etag, lambda: engine.map_png(checkpoint, images, index, kind, method,
                                                         polarity, cmap), v, checkpoint)

    # ------------------------------------------------------------------ Units view
    def dissecting(call):
        """``call()``, unknown ids and layers as 404, unusable requests as 422."""
        try:
            return call()
        except LookupError as exc:
            raise _not_found(exc) from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.get("/api/progress", response_model=ProgressInfo,
             summary="What the server is computing now (the page polls it during dissections)")
    def progress() -> ProgressInfo:
        return ProgressInfo(**engine.progress)

    @app.get("/api/runs/{run_id}/checkpoints/{iteration}/layers", response_model=list[LayerInfo],
             responses={404: {"description": "unknown run or checkpoint"}},
             summary="The generator's dissectable layers and their unit counts")
    def layers(run_id: str = PathParam(pattern=_ID), iteration: int = PathParam(ge=0)
               ) -> list[LayerInfo]:
        checkpoint = dissecting(lambda: registry.run(run_id).checkpoint(iteration))
        return [LayerInfo(name=n, units=d) for n, d in units.layers(checkpoint)]

    unit_base = "/api/runs/{run_id}/checkpoints/{iteration}/images/{set_id}/layers/{layer}/units"
    not_dissectable = {**missing, 422: {"description": "a set too small to dissect"}}

    def locate_set(run_id, iteration, set_id):
        return dissecting(lambda: (registry.run(run_id).checkpoint(iteration),
                                   registry.image_set(set_id)))

    @app.get(unit_base, response_model=UnitTable, responses=not_dissectable,
             summary="The units of one layer: threshold, label, IoU, IQR (dissected once, cached)")
    def unit_table(run_id: str = PathParam(pattern=_ID), iteration: int = PathParam(ge=0),
                   set_id: str = PathParam(pattern=_ID),
                   layer: str = PathParam(pattern=LAYER_PATTERN)) -> UnitTable:
        checkpoint, images = locate_set(run_id, iteration, set_id)
        return UnitTable(**dissecting(lambda: units.table(checkpoint, images, layer)))

    @app.get(unit_base + "/{unit}.png", response_class=Response,
             responses={**png_response, **not_dissectable},
             summary="A unit's top images, the region above its threshold outlined, as PNG")
    def unit_gallery(request: Request, run_id: str = PathParam(pattern=_ID),
                     iteration: int = PathParam(ge=0), set_id: str = PathParam(pattern=_ID),
                     layer: str = PathParam(pattern=LAYER_PATTERN), unit: int = PathParam(ge=0),
                     kind: Kind = "blend", stretch: Stretch = "asinh",  # type: ignore[valid-type]
                     v: str | None = Query(default=None, max_length=64)) -> Response:
        checkpoint, images = locate_set(run_id, iteration, set_id)
        if kind not in engine.kinds(images):
            raise HTTPException(404, f"image set {set_id!r} has no {kind} (it has no truth)")
        dissecting(lambda: (units.units_of(checkpoint, layer), units.halves(images)))
        etag = units.gallery_etag(checkpoint, images, layer, unit, kind, stretch)
        return dissecting(lambda: png(
            request, etag, lambda: units.gallery_png(checkpoint, images, layer, unit, kind, stretch),
            v, checkpoint))

    @app.post(base + "/interventions", response_model=InterventionResult,
              responses={**missing, 422: {"description": "a malformed intervention, an unknown "
                                                         "layer or a unit out of range"}},
              summary="Apply the dissection intervention JSON to one blend: both outputs before "
                      "and after, share of flux removed, ΔPSNR")
    def intervention(body: InterventionBody | Annotated[list[InterventionBody],
                                                        Field(min_length=1, max_length=16)] = Body(),
                     run_id: str = PathParam(pattern=_ID), iteration: int = PathParam(ge=0),
                     set_id: str = PathParam(pattern=_ID), index: int = PathParam(ge=0),
                     stretch: Stretch = "asinh"  # type: ignore[valid-type]
                     ) -> InterventionResult:
        checkpoint, images = locate(run_id, iteration, set_id, index)
        items = body if isinstance(body, list) else [body]

        def apply():
            edits = [Intervention.from_dict(i.model_dump(exclude_none=True)) for i in items]
            return InterventionResult(interventions=[e.to_dict() for e in edits],
                                      **units.intervene(checkpoint, images, index, edits, stretch))

        return dissecting(apply)

    @app.post("/api/uploads", response_model=ImageSetInfo, status_code=201,
              responses={413: {"description": "file too large"},
                         415: {"description": "not a FITS, PNG or JPEG file"},
                         422: {"description": "unreadable or unusable image"}},
              summary="Upload a blend (FITS, PNG or JPEG); returns its image-set id")
    def upload(file: UploadFile = File(...)) -> ImageSetInfo:
        from galaxai.userdata import read_stamps

        name = Path(file.filename or "upload").name
        suffix = Path(name).suffix.lower()
        if suffix not in _UPLOAD_SUFFIXES:
            raise HTTPException(415, f"{name!r}: upload a {', '.join(_UPLOAD_SUFFIXES)} file")
        data = file.file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"{name!r} is larger than {MAX_UPLOAD_BYTES} bytes; crop a stamp")
        if not data:
            raise HTTPException(422, f"{name!r} is empty")
        with tempfile.TemporaryDirectory(prefix="galaxai-upload-") as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data)
            try:
                stamps = read_stamps(path)
            except (ValueError, OSError) as exc:
                raise HTTPException(422, f"{name!r}: {exc}".replace(str(path), name)) from None
        n, h, w, _ = stamps.shape
        if h != w or h > MAX_UPLOAD_PIXELS:
            raise HTTPException(422, f"{name!r} is {h}×{w} px; give a square stamp of at most "
                                f"{MAX_UPLOAD_PIXELS} px centred on the blend")
        blend = np.ascontiguousarray(np.moveaxis(stamps[:16], -1, 1), dtype=np.float32)
        return set_info(registry.add_upload(name, blend))

    @app.post("/api/state", response_model=ViewState, responses=missing,
              summary="Check an imported view state (ids exist) and return it normalised")
    def check_state(state: ViewState) -> ViewState:
        try:
            run_ = registry.run(state.run)
            images = registry.image_set(state.images)
            images.check_index(state.index)
            for iteration in (state.iteration, state.compare):
                if iteration is not None:
                    run_.checkpoint(iteration)
        except UnknownIdError as exc:
            raise _not_found(exc) from None
        return state

    return app
