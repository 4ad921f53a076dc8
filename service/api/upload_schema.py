"""The OpenAPI description of POST /estimate's multipart body (FastAPI cannot derive it: the endpoint
parses the request stream itself, service/api/upload.py).

As strict as the server (issue #14): exactly the two parts `video` and `options`, no others; the video
part's file name must end in a video extension (stated in its Content-Disposition header's schema),
its content type one the server takes; `options` is a JSON object part (encoding application/json) with
the JobOptions schema plus this server's caps (boxes per frame, diffusion steps, hypotheses). What a
schema cannot say (a decodable clip, boxes inside it, the total box count, a served model) is a 422.
"""

from __future__ import annotations

from service.api.upload import VIDEO_EXTENSIONS
from service.contract import ClientBox, JobOptions
from service.settings import Settings

VIDEO_CONTENT_TYPES = ("video/mp4", "video/x-msvideo", "video/quicktime", "video/webm", "video/x-matroska",
                       "application/octet-stream")
_NUMBER = {"type": "number"}
_BBOX = {"type": "array", "minItems": 4, "maxItems": 4, "items": _NUMBER,
         "prefixItems": [_NUMBER, _NUMBER, {"type": "number", "exclusiveMinimum": 0},
                         {"type": "number", "exclusiveMinimum": 0}],
         "description": "COCO [x, y, w, h] in pixels, w, h > 0."}


def _any_case(ext: str) -> str:
    """'mp4' -> '[mM][pP]4' (JSON Schema patterns are ECMA-262: no inline flags)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in ext)


def inline_schema(model) -> dict:
    """The JSON schema of a pydantic model with its $defs inlined (it sits inside a form field)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.split("/")[-1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


def _boxes_schema(per_frame: int) -> dict:
    box = {"anyOf": [_BBOX, {
        "type": "object", "additionalProperties": False,
        "properties": {"bbox": _BBOX, "box": {**_BBOX, "description": "Same as bbox."},
                       "track_id": {"type": "integer", "minimum": 0,
                                    "description": ClientBox.model_fields["track_id"].description},
                       "score": {**_NUMBER, "description": ClientBox.model_fields["score"].description}},
        "oneOf": [{"required": ["bbox"], "not": {"required": ["box"]}},
                  {"required": ["box"], "not": {"required": ["bbox"]}}]}]}
    frame = {"anyOf": [{"type": "array", "maxItems": per_frame, "items": box}, {"type": "null"}]}
    return {"anyOf": [
        {"type": "object", "propertyNames": {"pattern": "^(0|[1-9][0-9]{0,8})$"},
         "additionalProperties": frame},
        {"type": "array", "items": frame},
        {"type": "null"}]}


def options_schema(settings: Settings) -> dict:
    """JobOptions' schema with both accepted shapes of `boxes` and this server's caps."""
    schema = inline_schema(JobOptions)
    props = schema["properties"]
    props["boxes"] = {**_boxes_schema(settings.max_boxes_per_frame),
                      "description": props["boxes"].get("description", "")}
    caps = {"diffusion_steps": settings.max_diffusion_steps, "hypotheses": settings.max_hypotheses}
    for name, cap in caps.items():
        for branch in props[name].get("anyOf", []):
            if branch.get("type") == "integer":
                branch["maximum"] = min(cap, branch.get("maximum", cap))
    schema["additionalProperties"] = False
    return schema


def upload_body(settings: Settings) -> dict:
    """openapi_extra of POST /estimate."""
    extensions = ", ".join("." + e for e in VIDEO_EXTENSIONS)
    disposition = {
        "description": f"The video part's file name must end in {extensions} (any case).",
        "schema": {"type": "string",
                   "pattern": r'filename="[^"]*\.(' + "|".join(map(_any_case, VIDEO_EXTENSIONS)) + r')"'},
        "example": 'form-data; name="video"; filename="clip.mp4"'}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {
            "type": "object", "required": ["video"], "additionalProperties": False,
            "properties": {
                "video": {"type": "string", "format": "binary",
                          "description": f"The clip: {extensions} (the file name's extension), at most "
                          f"{settings.max_upload_bytes} bytes."},
                "options": {**options_schema(settings),
                            "description": "Optional JSON object (the JobOptions of service/contract.py), "
                            f"at most {settings.max_options_bytes} bytes:\n\n"
                            + "\n".join(f"- `{k}`: {f.description}"
                                        for k, f in JobOptions.model_fields.items())},
            }},
        "encoding": {
            "video": {"contentType": ", ".join(VIDEO_CONTENT_TYPES),
                      "headers": {"Content-Disposition": disposition}},
            "options": {"contentType": "application/json"},
        }}}}}
