"""soxai.data.paths.Resolver gives what ``(root / raw).resolve()`` gives, links and '..' included."""

import os
from pathlib import Path

from soxai.data.paths import Resolver, is_inside


def _tree(tmp_path: Path) -> Path:
    """root/ with files, a folder, links to a file and a folder inside and outside it, a dangling link and a loop."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "img" / "deep").mkdir(parents=True)
    outside.mkdir()
    for p in (root / "a.png", root / "img" / "b.png", root / "img" / "deep" / "c.png", outside / "secret.png"):
        p.write_bytes(b"x")
    os.symlink(root / "img" / "b.png", root / "link_in.png")
    os.symlink(outside / "secret.png", root / "img" / "link_out.png")
    os.symlink(outside, root / "out_dir")
    os.symlink(root / "img" / "deep", root / "in_dir")
    os.symlink("relative/none.png", root / "dangling.png")
    os.symlink(root / "loop_b", root / "loop_a")
    os.symlink(root / "loop_a", root / "loop_b")
    return root.resolve()


RAWS = [
    "a.png", "img/b.png", "img/deep/c.png", "./img//b.png", "img/./deep/c.png", "img/deep/", "link_in.png",
    "img/link_out.png", "out_dir/secret.png", "in_dir/c.png", "in_dir/../b.png", "out_dir/../root/a.png",
    "img/../../outside/secret.png", "../outside/secret.png", "missing.png", "no/such/folder/x.png", "dangling.png",
    "in_dir/missing.png", "img/deep/..", ".", "img",
]
LOOPS = ["loop_a", "loop_a/x.png", "img/../loop_b"]


def test_resolver__same_path_as_pathlib_resolve_for_files_links_dots_and_missing_ones(tmp_path):
    root = _tree(tmp_path)
    resolve = Resolver(root)
    for raw in RAWS:
        assert resolve(raw) == (root / raw).resolve(), raw
    # a second pass reads the folders from its cache and still agrees
    assert [resolve(raw) for raw in RAWS] == [(root / raw).resolve() for raw in RAWS]


def test_resolver__a_link_loop_is_no_file_where_pathlib_raised(tmp_path):
    import sys

    import pytest

    root = _tree(tmp_path)
    resolve = Resolver(root)
    for raw in LOOPS:
        if sys.version_info < (3, 13):  # Python 3.13 stopped raising on a loop
            with pytest.raises(RuntimeError, match="Symlink loop"):
                (root / raw).resolve()
        assert not resolve(raw).is_file() and is_inside(resolve(raw), root), raw


def test_resolver__links_that_point_out_of_the_root_stay_outside(tmp_path):
    root = _tree(tmp_path)
    resolve = Resolver(root)
    outside = {raw for raw in RAWS if not is_inside(resolve(raw), root)}
    assert {"img/link_out.png", "out_dir/secret.png", "img/../../outside/secret.png",
            "../outside/secret.png"} <= outside
    assert not {"a.png", "link_in.png", "in_dir/c.png", "in_dir/../b.png"} & outside


def test_is_inside__component_by_component_as_pathlib():
    for path, root in (("/data/x/a.png", "/data/x"), ("/data/x2/a.png", "/data/x"), ("/data/x", "/data/x"),
                       ("/data", "/data/x"), ("/a.png", "/"), ("/data/x/", "/data/x")):
        assert is_inside(Path(path), Path(root)) == Path(path).is_relative_to(Path(root)), (path, root)

