"""The bundle contract: manifest validation, file checks and atomic export."""

import dataclasses
import json
import os
import shutil

import pytest

from edgemode import EdgemodeError
from edgemode.bundle import manifest as bundle_manifest
from edgemode.bundle.manifest import BundleError
from edgemode.export import export
from edgemode.runtime import Engine

from conftest import edit_manifest


@pytest.fixture
def bundle(tmp_path, bundles):
    """A private copy of the fp32 bundle that a test may damage."""
    path = tmp_path / "bundle"
    shutil.copytree(bundles["fp32"], path)
    return path


def test_manifest_lists_every_file_with_size_and_sha256(bundles):
    bundle = bundles["int4"]
    manifest = bundle_manifest.read(bundle)
    on_disk = {p.name for p in bundle.iterdir()} - {bundle_manifest.MANIFEST}
    assert set(manifest.files) == on_disk
    bundle_manifest.verify(bundle, manifest, list(manifest.files), full=True)
    assert manifest.quantization["weights"] == "int4" and manifest.quantization["accuracy_level"] == 4
    assert manifest.backbone.fingerprint.startswith("sha256:")


def test_the_manifest_type_writes_back_what_the_exporter_wrote(bundles):
    for bundle in bundles.values():
        manifest = bundle_manifest.read(bundle)
        assert manifest.to_json() == json.loads((bundle / bundle_manifest.MANIFEST).read_text())
        with pytest.raises(dataclasses.FrozenInstanceError):
            manifest.max_context = 4
        with pytest.raises(TypeError):
            manifest.files["tokenizer.json"] = None


def test_schema_from_the_future_is_refused(bundle):
    edit_manifest(bundle, lambda m: m.update(schema=bundle_manifest.SCHEMA_VERSION + 1))
    with pytest.raises(BundleError, match="newer than this edgemode"):
        Engine.load(bundle)


def test_bundle_of_replacing_experts_asks_to_retrain(bundle):
    edit_manifest(bundle, lambda m: m.update(schema=bundle_manifest.RESIDUAL_SCHEMA - 1))
    with pytest.raises(BundleError, match="replace a share of their block.*re-train the experts.*export again"):
        Engine.load(bundle)


def test_missing_manifest_is_not_a_bundle(bundle):
    (bundle / bundle_manifest.MANIFEST).unlink()
    with pytest.raises(BundleError, match="not an edgemode bundle"):
        Engine.load(bundle)


def test_garbage_manifest_is_refused(bundle):
    (bundle / bundle_manifest.MANIFEST).write_bytes(b"\xff\xfe{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Engine.load(bundle)


@pytest.mark.parametrize("name", ["../escape.onnx", "/etc/passwd", "a/../../b"])
def test_paths_outside_the_bundle_are_refused(bundle, name):
    edit_manifest(bundle, lambda m: m["files"].update({name: {"bytes": 1, "sha256": "0"}}))
    with pytest.raises(BundleError, match="outside the bundle"):
        Engine.load(bundle)


def test_symlink_escaping_the_bundle_is_refused(bundle, tmp_path):
    outside = tmp_path / "outside.onnx"
    shutil.copy(bundle / "head.onnx", outside)
    (bundle / "head.onnx").unlink()
    os.symlink(outside, bundle / "head.onnx")
    with pytest.raises(BundleError, match="outside the bundle"):
        Engine.load(bundle)


def test_truncated_graph_is_caught_at_load(bundle):
    data = bundle / "backbone.block0.onnx.data"
    data.write_bytes(data.read_bytes()[:-16])
    with pytest.raises(BundleError, match="truncated or replaced"):
        Engine.load(bundle)


def test_tampered_graph_is_caught_by_full_verification(bundle):
    data = bundle / "expert.a.block0.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0xFF
    data.write_bytes(bytes(raw))
    Engine.load(bundle, ["b"])  # the damaged expert is not needed: nothing reads it
    with pytest.raises(BundleError, match="sha256"):
        Engine.load(bundle, ["a"], verify=True)


def test_missing_expert_file_fails_only_when_needed_and_changes_nothing(bundle):
    (bundle / "expert.b.block1.onnx").unlink()
    engine = Engine.load(bundle, ["a"])
    with pytest.raises(BundleError, match="missing"):
        engine.set_domains(["a", "b"])
    assert engine.domains == ["a"] and engine.decoder.domains == ["a"]


def test_failed_export_leaves_previous_bundle_intact(tmp_path, model_dir, bundles, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(bundles["fp32"], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    from edgemode.export import exporter as export_module

    monkeypatch.setitem(export_module.TOLERANCES, "fp32", ("max_rel_error", -1.0))  # force the parity check to fail
    with pytest.raises(EdgemodeError, match="disagree with the PyTorch model"):
        export(model_dir, out, quant="fp32", max_context=64)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary directory left behind


def test_export_replaces_a_previous_bundle(tmp_path, model_dir, bundles):
    out = tmp_path / "out"
    shutil.copytree(bundles["int4"], out)
    export(model_dir, out, domains=["b"], quant="fp32", max_context=64)
    assert bundle_manifest.read(out).domains == ("b",)
    assert not (out / "expert.a.block0.onnx").exists()


def test_export_refuses_to_overwrite_a_non_bundle(tmp_path, model_dir):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(EdgemodeError, match="refusing to overwrite"):
        export(model_dir, out)
    assert (out / "notes.txt").read_text() == "keep me"


def test_export_refuses_unknown_domain_and_writes_nothing(tmp_path, model_dir):
    with pytest.raises(EdgemodeError, match="unknown domain"):
        export(model_dir, tmp_path / "out", domains=["zz"])
    assert not (tmp_path / "out").exists()


def test_full_disk_during_export_is_reported_and_keeps_the_previous_bundle(tmp_path, model_dir, bundles, monkeypatch):
    from click.testing import CliRunner

    from edgemode.cli import cli
    from edgemode.export import exporter as export_module

    out = tmp_path / "out"
    shutil.copytree(bundles["fp32"], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    save, saved = export_module._save_graph, []

    def fill_disk_at_third_graph(bundle, name, model):
        if len(saved) == 2:
            raise OSError(28, os.strerror(28), str(bundle / name))
        saved.append(name)
        save(bundle, name, model)

    monkeypatch.setattr(export_module, "_save_graph", fill_disk_at_third_graph)
    result = CliRunner().invoke(cli, ["export", str(model_dir), "-o", str(out), "--quant", "fp32", "--context", "64"])
    assert result.exit_code == 1
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"edgemode: error: writing a bundle at {out} failed: No space left on device")
    assert message.endswith("; nothing was written; the previous one there is unchanged") and "Traceback" not in result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_export_to_an_unwritable_place_is_a_clear_error(tmp_path, model_dir):
    from click.testing import CliRunner

    from edgemode.cli import cli

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = CliRunner().invoke(cli, ["export", str(model_dir), "-o", str(not_a_dir / "bundle"), "--quant", "fp32"])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"edgemode: error: cannot write a bundle at {not_a_dir / 'bundle'}: {not_a_dir} is not a directory; nothing was written"
    assert not_a_dir.read_text() == "x"


def test_export_without_permission_is_a_clear_error(tmp_path, model_dir):
    from click.testing import CliRunner

    from edgemode.cli import cli

    # /sys refuses new directories even to root, so this is a real permission error.
    result = CliRunner().invoke(cli, ["export", str(model_dir), "-o", "/sys/edgemode-bundle", "--quant", "fp32"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "edgemode: error: cannot write a bundle at /sys/edgemode-bundle: Operation not permitted; nothing was written")
