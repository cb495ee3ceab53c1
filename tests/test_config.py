import dataclasses

import pytest

from galaxai._atomic import atomic_write_text
from galaxai.config import config_from_mapping, read_config, write_config


@dataclasses.dataclass(frozen=True)
class Inner:
    depth: int = 2


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str = "x"
    sizes: tuple = (1, 2)
    inner: Inner = Inner()


def test_roundtrip(tmp_path):
    cfg = Outer(name="y", sizes=(3, 4), inner=Inner(depth=5))
    path = write_config(tmp_path / "config.toml", cfg)
    assert read_config(Outer, path) == cfg


def test_unknown_key_named():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['colour'\]"):
        config_from_mapping(Outer, {"colour": 1})
    with pytest.raises(ValueError, match=r"cfg.inner: unknown key\(s\) \['width'\]"):
        config_from_mapping(Outer, {"inner": {"width": 1}}, source="cfg")


def test_bad_toml_names_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = ")
    with pytest.raises(ValueError, match="bad.toml"):
        read_config(Outer, bad)
    with pytest.raises(FileNotFoundError, match="missing.toml"):
        read_config(Outer, tmp_path / "missing.toml")


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_atomic_write_uses_default_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "page.html", "<p>hi</p>")
    finally:
        os.umask(mask)
    assert (path.stat().st_mode & 0o777) == 0o644
