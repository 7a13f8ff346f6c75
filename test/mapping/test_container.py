import json

import numpy as np
import pytest

from geoloc_ros.mapping.container import FORMAT_VERSION, MANIFEST_NAME, Bundle, BundleWriter
from geoloc_ros.mapping.errors import BundleChecksumError, BundleError, BundleFormatError


def write_bundle(path, **kwargs):
    with BundleWriter(path, **kwargs) as writer:
        writer.add_array("views/pose", np.arange(32, dtype=np.float64).reshape(2, 4, 4))
        writer.add_concatenated("features/descriptors", (np.full((n, 128), n, np.uint8) for n in (3, 5)), 8)
        writer.add_json("topology/meta", {"k": 3})
        writer.commit({"origin": {"lat": 1.0, "lon": 2.0, "alt": 0.0}})


def test_round_trip_memory_mapped(tmp_path):
    write_bundle(tmp_path / "b")
    bundle = Bundle.open(tmp_path / "b")
    assert bundle.manifest["format_version"] == FORMAT_VERSION
    assert bundle.manifest["origin"]["lat"] == 1.0
    desc = bundle.array("features/descriptors")
    assert isinstance(desc, np.memmap) and desc.shape == (8, 128)
    assert desc[:3].max() == 3 and desc[3:].min() == 5
    assert np.array_equal(bundle.array("views/pose", mmap=False)[1, 3], [28, 29, 30, 31])
    assert bundle.json("topology/meta") == {"k": 3}
    assert bundle.members("views/") == ["views/pose.npy"]


def test_a_new_version_copies_the_members_it_keeps_and_carries_the_metadata(tmp_path):
    write_bundle(tmp_path / "b")
    source = Bundle.open(tmp_path / "b")
    assert source.metadata == {"origin": {"lat": 1.0, "lon": 2.0, "alt": 0.0}}
    with BundleWriter(tmp_path / "v2") as writer:
        writer.copy_members(source, lambda rel: rel.startswith(("views/", "topology/")))
        writer.add_array("views/pose", np.zeros((2, 4, 4)))
        writer.commit({**source.metadata, "map_version": 2})
    new = Bundle.open(tmp_path / "v2")
    assert new.members() == ["features/descriptors.npy", "views/pose.npy"]  # topology/ skipped
    assert np.array_equal(new.array("features/descriptors"), source.array("features/descriptors"))
    assert not new.array("views/pose").any()
    assert new.metadata == {**source.metadata, "map_version": 2}
    assert source.array("views/pose").any()  # the source is untouched


def test_uncommitted_or_failed_build_leaves_nothing(tmp_path):
    with pytest.raises(BundleError, match="was not committed"), BundleWriter(tmp_path / "b") as writer:
        writer.add_array("a", np.zeros(3))
    with pytest.raises(RuntimeError), BundleWriter(tmp_path / "b") as writer:
        writer.add_array("a", np.zeros(3))
        raise RuntimeError("worker died")
    assert list(tmp_path.iterdir()) == []


def test_corruption_is_named(tmp_path):
    write_bundle(tmp_path / "b")
    target = tmp_path / "b" / "features" / "descriptors.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(BundleChecksumError, match=r"descriptors.npy: checksum mismatch"):
        Bundle.open(tmp_path / "b")
    Bundle.open(tmp_path / "b", verify="sizes")  # same size: only a full check sees it
    target.write_bytes(bytes(data[:-10]))
    with pytest.raises(BundleChecksumError, match=r"descriptors.npy: size"):
        Bundle.open(tmp_path / "b", verify="sizes")
    target.unlink()
    with pytest.raises(BundleChecksumError, match=r"descriptors\.npy: listed in the manifest but missing"):
        Bundle.open(tmp_path / "b", verify="sizes")


def test_other_format_version_is_refused(tmp_path):
    write_bundle(tmp_path / "b")
    manifest_path = tmp_path / "b" / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleFormatError, match=f"format version {FORMAT_VERSION + 1} is not supported"):
        Bundle.open(tmp_path / "b")


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        Bundle.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleFormatError, match=r"manifest\.json is missing"):
        Bundle.open(tmp_path / "empty")
    (tmp_path / "empty" / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(BundleFormatError, match="not valid JSON"):
        Bundle.open(tmp_path / "empty")


def test_chunk_count_mismatch(tmp_path):
    with pytest.raises(BundleError, match="announced 10"), BundleWriter(tmp_path / "b") as writer:
        writer.add_concatenated("x", [np.zeros((3, 2))], 10)


def test_files_written_by_other_code_are_checksummed(tmp_path):
    with BundleWriter(tmp_path / "b") as writer:
        vocab_dir = writer.directory("vocab")
        np.save(vocab_dir / "sift_words.npy", np.ones((4, 128), np.float32))
        writer.commit({})
    bundle = Bundle.open(tmp_path / "b")
    assert bundle.members() == ["vocab/sift_words.npy"]
    assert bundle.array("vocab/sift_words").shape == (4, 128)


# ------------------------------------------------------------------ the manifest is validated as a schema
def _edit_files_table(bundle_dir, edit):
    manifest_path = bundle_dir / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    edit(manifest["files"])
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("verify", ["full", "sizes", "none"])
@pytest.mark.parametrize(
    "name, problem",
    [
        ("../../../../etc/passwd", "stay inside the bundle"),
        ("views/../../outside.npy", "stay inside the bundle"),
        ("/etc/passwd", "relative POSIX path"),
        ("C:/Windows/win.ini", "relative POSIX path"),
        ("views\\pose.npy", "relative POSIX path"),
        ("views//pose.npy", "normalised"),
        ("./views/pose.npy", "normalised"),
        ("manifest.json", "the manifest itself"),
    ],
)
def test_member_names_outside_the_bundle_are_refused(tmp_path, name, problem, verify):
    write_bundle(tmp_path / "b")
    outside = tmp_path / "outside.npy"
    outside.write_bytes(b"secret")
    from geoloc_ros.mapping.container import sha256_of

    # Even with the real size and hash of the file it points at.
    entry = {"bytes": 6, "sha256": sha256_of(outside)}
    _edit_files_table(tmp_path / "b", lambda files: files.update({name: entry}))
    with pytest.raises(BundleFormatError, match=rf"member name .* {problem}"):
        Bundle.open(tmp_path / "b", verify=verify)


@pytest.mark.parametrize("verify", ["full", "sizes", "none"])
def test_symbolic_links_out_of_the_bundle_are_refused(tmp_path, verify):
    write_bundle(tmp_path / "b")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "pose.npy").write_bytes((tmp_path / "b" / "views" / "pose.npy").read_bytes())
    (tmp_path / "b" / "views" / "pose.npy").unlink()
    (tmp_path / "b" / "views" / "pose.npy").symlink_to(outside / "pose.npy")
    with pytest.raises(
        BundleFormatError, match=r"views/pose\.npy: bundle members must not be symbolic links"
    ):
        Bundle.open(tmp_path / "b", verify=verify)
    # A linked folder on the way is refused just the same.
    write_bundle(tmp_path / "c")
    (tmp_path / "c" / "views").rename(outside / "views")
    (tmp_path / "c" / "views").symlink_to(outside / "views")
    with pytest.raises(BundleFormatError, match=r"c/views: bundle members must not be symbolic links"):
        Bundle.open(tmp_path / "c", verify=verify)


@pytest.mark.parametrize(
    "entry, field",
    [
        ({"sha256": "0" * 64}, "bytes"),
        ({"bytes": "1024", "sha256": "0" * 64}, "bytes"),
        ({"bytes": -1, "sha256": "0" * 64}, "bytes"),
        ({"bytes": True, "sha256": "0" * 64}, "bytes"),
        ({"bytes": 1.5, "sha256": "0" * 64}, "bytes"),
        ({"bytes": 10}, "sha256"),
        ({"bytes": 10, "sha256": "xyz"}, "sha256"),
        ("not an object", "object"),
    ],
)
def test_mistyped_manifest_entries_give_clear_errors(tmp_path, entry, field):
    write_bundle(tmp_path / "b")
    _edit_files_table(tmp_path / "b", lambda files: files.update({"views/pose.npy": entry}))
    with pytest.raises(BundleFormatError, match=rf"manifest\.json: files\['views/pose\.npy'\].*{field}"):
        Bundle.open(tmp_path / "b", verify="none")


@pytest.mark.parametrize("verify", ["sizes", "none"])
def test_corrupted_json_member_is_a_clear_error_without_checksums(tmp_path, verify):
    write_bundle(tmp_path / "b")
    target = tmp_path / "b" / "topology" / "meta.json"
    target.write_bytes(b"\xff" * target.stat().st_size)  # same size: only a full check sees it
    bundle = Bundle.open(tmp_path / "b", verify=verify)
    with pytest.raises(BundleChecksumError, match=r"topology/meta\.json: cannot read JSON member"):
        bundle.json("topology/meta")
