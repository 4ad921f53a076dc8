"""Blob store: streamed writes, size limit, atomic commit, path safety."""

from __future__ import annotations

import pytest

from service.blobs import BlobStore, UploadTooLarge


def test_stream_commit_and_resolve(tmp_path):
    store = BlobStore(tmp_path / "blobs", max_bytes=100)
    w = store.writer("MP4")
    w.write(b"a" * 60)
    assert w.tmp_path.exists() and not any(p.suffix == ".mp4" for p in store.root.iterdir())
    w.write(b"b" * 40)  # exactly the limit is fine
    path = w.commit()
    assert path.read_bytes() == b"a" * 60 + b"b" * 40 and path.suffix == ".mp4"
    assert list(store.root.iterdir()) == [path]  # temp file renamed away
    assert store.resolve(str(path)) == path == store.resolve(path.name)
    assert store.delete(path) and not store.delete(path)


def test_too_large_deletes_partial(tmp_path):
    store = BlobStore(tmp_path, max_bytes=10)
    w = store.writer("webm")
    w.write(b"x" * 8)
    with pytest.raises(UploadTooLarge):
        w.write(b"x" * 3)
    assert list(tmp_path.iterdir()) == []
    w.abort()  # idempotent


def test_names_are_random_and_unique(tmp_path):
    store = BlobStore(tmp_path, max_bytes=10)
    names = {store.writer("mp4").name for _ in range(50)}
    assert len(names) == 50


@pytest.mark.parametrize("bad", ["../etc/passwd", "/etc/passwd", "sub/abcdefghijklmnopqrstuvwx.mp4",
                                 "abcdefghijklmnopqrstuvwx.mp4/../../x", "short.mp4"])
def test_resolve_refuses_paths_outside(tmp_path, bad):
    store = BlobStore(tmp_path, max_bytes=10)
    with pytest.raises(ValueError):
        store.resolve(bad)
    with pytest.raises(ValueError):
        store.resolve(tmp_path.parent / "abcdefghijklmnopqrstuvwx.mp4")


def test_bad_extension_refused(tmp_path):
    with pytest.raises(ValueError):
        BlobStore(tmp_path, 10).writer("../mp4")
