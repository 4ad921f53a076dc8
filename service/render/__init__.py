"""Skeleton overlay videos: draw a result's poses on the clip's frames and encode H.264 (no torch).

`service.render.overlay` holds the entry points (render_overlay, load_result, ...). This file imports
nothing, so registering `vidpose render` does not load OpenCV and PyAV for every `vidpose` command.
"""
