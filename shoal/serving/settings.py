"""The settings of one server: limits, batching, backend, admin token. Free of torch and FastAPI, so the parent
process of ``shoal serve --workers N`` (which only supervises) never loads them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ServeSettings"]


class ServeSettings(BaseModel):
    """Limits and batching of one server. Every field has a safe default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_batch_rows: int = Field(256, ge=1, le=65_536, description="most rows per model call")
    max_wait_ms: float = Field(2.0, ge=0, le=1000, description="most a request waits for others to batch with")
    batching: bool = Field(True, description="false: one request per model call (for comparison)")
    max_rows_per_request: int = Field(1024, ge=1, le=1_000_000)
    max_body_bytes: int = Field(1 << 20, ge=1024, description="request body limit; over it: 413")
    body_timeout_s: float = Field(10.0, gt=0, le=3600, description="the whole body must arrive within this many "
                                                                   "seconds of the request; else 408")
    header_timeout_s: float = Field(10.0, gt=0, le=3600, description="a request's headers must arrive within this "
                                                                     "many seconds of its first byte; else 408 "
                                                                     "and the connection closed")
    max_text_bytes: int = Field(65_536, ge=1, description="UTF-8 bytes per text field; over it: 422")
    max_id_bytes: int = Field(2048, ge=1, description="UTF-8 bytes per id (sparse field, or each id of a list); "
                                                      "over it: 422")
    max_list_ids: int = Field(1024, ge=1, description="ids in one list feature's cell; over it: 422")
    max_media_bytes: int = Field(4 << 20, ge=1, description="bytes of one image or audio value (base64 decoded, "
                                                            "or a multipart file part); over it: 422 (a file part: "
                                                            "413; the body limit, max_body_bytes, also bounds a "
                                                            "request: raise it for large media)")
    max_inflight_per_client: int = Field(32, ge=1, description="requests of one client in flight at once; one "
                                                               "more: 429 and a close (shoal.serving.fairness)")
    client_error_rate: float = Field(10.0, ge=0, le=1e6, description="4xx answers a second one client may sustain "
                                                                     "(token bucket); past it: 429 (0: no limit)")
    client_error_burst: int = Field(50, ge=1, description="4xx answers one client may get in a burst")
    client_bytes_rate: float = Field(8 << 20, ge=0, description="request body bytes a second one client may sustain "
                                                               "(token bucket); past it its requests wait their "
                                                               "turn, up to 1 s, then 429 (0: no limit)")
    client_bytes_burst: int = Field(8 << 20, ge=1, description="request body bytes one client may send at once")
    client_key: Literal["auto", "ip", "connection"] = Field(
        "auto", description="one client is one address (ip), one connection, or auto: per address, loopback per "
                            "connection")
    admin_token: str | None = Field(None, min_length=8, repr=False, description="None: admin endpoints off")
    workers: int = Field(1, ge=1, description="server processes (reload them with SIGHUP when > 1)")
    backend: Literal["auto", "raw", "torch", "onnx", "onnx-int8", "onnx-fp16"] = Field(
        "auto", description="auto: the fastest path measured end to end (the raw graph, model.raw.onnx, where "
                            "exported); raw: the raw graph always; else the Python encoder and this backend")
    follow_s: float = Field(2.0, ge=0, le=3600, description="serving a model alias (NAME@ALIAS): check every this "
                                                           "many seconds whether it moved, and reload (0: never)")
    freeze_heap: bool = Field(False, description="gc.freeze() after a model loads (shoal serve: on); a process "
                                                 "setting, so off for apps embedded in other programs")
