"""Environment values as the shell of a real job sees them: booleans are 1/0 (the tests registry
orbs make: `[ "$PARAM" = "1" ]`, `-eq 1`), numbers their written text, list-form environments
read; run by a real `circlet serve` and its embedded runner."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import LiveServer
from tests.e2e.helpers import Api
from tests.pipelines.helpers import make_repo
from tests.pipelines.test_config_fidelity import ENVIRONMENTS


def test_a_job_sees_booleans_as_1_and_0(live_server: LiveServer, tmp_path: Path) -> None:
    account = live_server.admin("bootstrap", "--org", "e2e", "--user", "alice")
    make_repo(tmp_path / "repo", {".circleci/config.yml": ENVIRONMENTS})
    live_server.admin("project", "create", "gh/e2e/app", "--repo", str(tmp_path / "repo"))
    api = Api(live_server.url, account["token"])
    pipeline = api.post("/project/gh/e2e/app/pipeline", 201, json={"branch": "main"})
    [workflow] = api.workflows(pipeline["id"])
    settled = api.settled(workflow["id"], "success", "failed", "error")
    job = api.jobs(workflow["id"])["test"]
    details = api.http.get(f"/project/gh/e2e/app/job/{job['job_number']}")
    assert settled["status"] == "success", details.text
