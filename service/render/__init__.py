"""Skeleton overlay videos: draw a result's poses on the clip's frames and encode H.264 (no torch)."""

from service.render.overlay import RenderError, load_result, missing_frames, render_overlay

__all__ = ["RenderError", "load_result", "missing_frames", "render_overlay"]
