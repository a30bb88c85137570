"""``POST /predict`` with ``Content-Type: multipart/form-data`` (RFC 7578): one row, one part per column.

    curl -F image=@digit.png http://127.0.0.1:8000/predict
    curl -F picture=@ad.png -F sound=@query.wav -F shop=s1 -F price=0.4 http://127.0.0.1:8000/predict

    a part named after     holds                                  the JSON body's same value
    an image/audio column  the file's bytes as they are           "picture": "<base64 of the file>"
    a dense or time column a number as JSON writes it; "": null   "price": 0.4, "price": null
    a sparse column        the id; "": null                       "shop": "s1", "shop": null
    a text column          the text (UTF-8)                       "title": "Stocks rally"

The body is read as a JSON body is (:func:`~shoal.serving.endpoint.read_body`: ``max_body_bytes``,
``body_timeout_s``, the client's byte budget), then parsed whole by python-multipart, the streaming parser
Starlette uses. The row is validated by the same :class:`~shoal.serving.schema.RequestSchema` checks as a JSON row
(:meth:`~shoal.serving.schema.RequestSchema.parse_form`): the same 422 messages for a bad, missing or unknown
field, under ``loc`` ``["body", "rows", 0, FIELD]``. Refused before that, each naming what is wrong::

    400  no boundary in the Content-Type (before the body is read); a body python-multipart cannot parse, or one
         without its closing boundary; a part without a form-data name
    413  more parts than the model's fields + SPARE_PARTS; a media part over max_media_bytes
    422  a field sent twice

A part's file name and Content-Type are not read: a media part's bytes are told by how they start, as a JSON
body's base64 is, and never name a file on the server.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from shoal.serving.errors import ServeError
from shoal.serving.schema import FieldSpec, RequestSchema

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["FORM", "SPARE_PARTS", "form_boundary", "form_json_schema", "form_rows"]

log = logging.getLogger(__name__)

FORM = "multipart/form-data"
SPARE_PARTS = 8  # parts allowed beyond the model's fields, so that unknown ones are named in a 422, not counted
MAX_BOUNDARY = 70  # characters (RFC 2046 5.1.1)
_MEDIA = ("image", "audio")
# python-multipart logs a warning per malformed body; its reason is the client's 400 (and our DEBUG line), so the
# parser gets a logger of its own, outside logging's tree, that drops them rather than print one per bad request
_PARSER_LOG = logging.Logger("python_multipart", logging.ERROR)


def form_boundary(content_type: str | None) -> bytes | None:
    """The boundary of a ``multipart/form-data`` Content-Type; None for any other type (JSON's check decides);
    a 400 when the boundary is missing or too long, before a byte of the body is read."""
    if not content_type or content_type.partition(";")[0].strip().lower() != FORM:
        return None
    boundary = parse_options_header(content_type)[1].get(b"boundary", b"")
    if not boundary or len(boundary) > MAX_BOUNDARY:
        what = "has no boundary" if not boundary else f"has a boundary of {len(boundary)} characters (at most 70)"
        raise ServeError(400, f"Content-Type {FORM} {what}: send '{FORM}; boundary=...' as curl -F and HTTP "
                              "clients' files= do (do not set the Content-Type header by hand)")
    return boundary


def form_rows(schema: RequestSchema, body: bytes, boundary: bytes) -> list[BaseModel]:
    """The one validated row of a multipart body; raises :class:`ServeError` (400, 413, 422) or pydantic's
    ``ValidationError`` (422, described like a JSON body's)."""
    specs = {f.column: f for f in schema.fields}
    parts = _Parts({c for c, f in specs.items() if f.kind in _MEDIA}, schema.max_media_bytes,
                   len(specs) + SPARE_PARTS)
    try:
        parser = MultipartParser(boundary, parts.callbacks())
        parser.logger = _PARSER_LOG
        parser.write(body)
    except FormParserError as err:
        log.debug("malformed multipart body: %s", err)
        raise ServeError(400, f"malformed {FORM} body: {err}; send one part per field, each with "
                              "'Content-Disposition: form-data; name=\"FIELD\"'") from None
    if not parts.ended:
        raise ServeError(400, f"the {FORM} body of {len(body):,} bytes ends before its closing boundary "
                              f"'--{boundary.decode('latin-1')}--': send the whole body")
    return schema.parse_form({name: _value(specs.get(name), data) for name, data in parts.values.items()})


def _value(spec: FieldSpec | None, data: bytes) -> Any:
    """A part's bytes as the JSON value the field would hold (see the module's table)."""
    if spec is None or spec.kind in _MEDIA:
        return data  # a media file as it is; an unknown field's value is only named, never read
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data  # not a string: the field's check says so, naming it
    if spec.kind == "text":
        return text
    if not text:
        return None  # an empty field: a missing value, as an empty cell of a CSV file
    if spec.kind == "sparse":
        return text
    try:
        number = json.loads(text)
    except ValueError:
        return text  # the field's check says what it takes
    return number if number is None or type(number) in (int, float) else text


class _Parts:
    """python-multipart's callbacks: the parts of one body by name, within the limits."""

    def __init__(self, media: set[str], max_media_bytes: int, max_parts: int) -> None:
        self.media = media
        self.max_media_bytes = max_media_bytes
        self.max_parts = max_parts
        self.values: dict[str, bytes] = {}
        self.ended = False
        self._count = 0
        self._header = bytearray()
        self._value = bytearray()
        self._disposition = b""
        self._name = ""
        self._data = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {"on_part_begin": self._begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
                "on_part_end": self._part_end, "on_end": self._end}

    def _begin(self) -> None:
        self._count += 1
        if self._count > self.max_parts:
            raise ServeError(413, f"{FORM} body of over {self.max_parts} parts is over the limit of {self.max_parts} "
                                  f"(the model's {self.max_parts - SPARE_PARTS} fields + {SPARE_PARTS}); send one part "
                                  "per field, one row per request")
        self._disposition = b""
        self._data = bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._header.strip().lower() == b"content-disposition":
            self._disposition = bytes(self._value)
        self._header.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        kind, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if kind != b"form-data" or name is None:
            raise ServeError(400, f"part {self._count} of the {FORM} body has no name: each part needs the header "
                                  "'Content-Disposition: form-data; name=\"FIELD\"'")
        self._name = name.decode("utf-8", errors="replace")
        if self._name in self.values:
            raise ServeError(422, f"field {self._name!r} is sent twice; send each field once (one row per "
                                  f"{FORM} request)")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._name in self.media and len(self._data) + end - start > self.max_media_bytes:
            raise ServeError(413, f"part {self._name!r} is over the limit of {self.max_media_bytes:,} bytes for one "
                                  "media value (max_media_bytes); send a smaller file")
        self._data += data[start:end]

    def _part_end(self) -> None:
        self.values[self._name] = bytes(self._data)

    def _end(self) -> None:
        self.ended = True


def form_json_schema(schema: RequestSchema) -> dict[str, Any]:
    """The OpenAPI schema of a multipart request (``/docs`` shows a file input per media field)."""
    properties: dict[str, Any] = {}
    for field in schema.describe():
        media = field["kind"] in _MEDIA
        properties[field["name"]] = {
            "type": "string", **({"format": "binary"} if media else {}),
            "description": (f"{field['kind']}: the file ({field['type'].removeprefix('base64 of ')}), at most "
                            f"{field['max_bytes']:,} bytes" if media else
                            f"{field['kind']}: {field['type']} as text (empty: null)" if field["kind"] != "text"
                            else "text: the text (UTF-8)")}
    return {"title": "PredictForm", "type": "object", "properties": properties, "required": list(properties),
            "description": "One row: a part per field; a media field's part is the file itself"}
