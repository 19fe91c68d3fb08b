"""The dmp-fhir console entry point."""

from __future__ import annotations

import json
import os

from click.testing import CliRunner

from fhir_server.cli import main


def test_help_of_every_command():
    runner = CliRunner()
    for args in ([], ["serve"], ["load"]):
        result = runner.invoke(main, [*args, "--help"])
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_load_demo_data_into_the_real_database(app, mongo_uri, tmp_path):
    runner = CliRunner()
    database = app.config["DMP_SETTINGS"].database + "_cli"
    env = {"MONGODB_URI": mongo_uri, "DMP_DATABASE": database}
    result = runner.invoke(main, ["load", "--demo", "2"], env=env)
    assert result.exit_code == 0, result.output
    assert "loaded" in result.output
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": "Patient?_summary=count"}}],
    }
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    result = runner.invoke(main, ["load", str(path)], env=env)
    assert result.exit_code == 0, result.output


def test_load_without_arguments_is_a_usage_error():
    result = CliRunner().invoke(main, ["load"], env={"MONGODB_URI": ""})
    assert result.exit_code != 0 and "Give bundle files" in result.output
