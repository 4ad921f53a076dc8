"""The OpenAPI description of POST /estimate's multipart body (FastAPI cannot derive it: the endpoint
parses the request stream itself, service/api/upload.py)."""

from __future__ import annotations

from service.contract import JobOptions


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


UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["video"],
    "properties": {
        "video": {"type": "string", "format": "binary",
                  "description": "The clip: .mp4, .avi, .mov, .webm or .mkv."},
        "options": {"type": "string", "contentMediaType": "application/json",
                    "contentSchema": inline_schema(JobOptions),
                    "description": "Optional JSON object (the JobOptions of service/contract.py):\n\n"
                    + "\n".join(f"- `{k}`: {f.description}" for k, f in JobOptions.model_fields.items())},
    }}}}}}
