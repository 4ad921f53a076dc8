"""Model name or path -> checkpoint file (torch-free: `vidpose serve` resolves before any child starts)."""

from __future__ import annotations

from pathlib import Path


class ModelNotFound(FileNotFoundError):
    pass


def resolve_model(name_or_path: str, models_dir: str | Path) -> tuple[str, Path]:
    """A model name (`<models_dir>/<name>.safetensors`) or a file path -> (name, absolute path).

    The name a model is served under is its file's stem: jobs (and the stream they
    are queued on) name it.
    """
    p = Path(name_or_path).expanduser()
    if p.suffix == ".safetensors" or p.is_file() or "/" in str(name_or_path):
        if not p.is_file():
            raise ModelNotFound(f"model file not found: {p}")
        return p.stem, p.resolve()
    path = Path(models_dir) / f"{name_or_path}.safetensors"
    if not path.is_file():
        raise ModelNotFound(
            f"model {name_or_path!r} not found: expected the checkpoint file {path}. "
            "Train one (`vidpose train`, see README), copy a vidpose .safetensors checkpoint there, "
            "set VIDPOSE_MODELS_DIR to the folder holding it, or pass --model PATH/TO/FILE.safetensors")
    return name_or_path, path.resolve()
