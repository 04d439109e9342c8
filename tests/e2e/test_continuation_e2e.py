"""Dynamic config through CircleCI's own orbs, unchanged: a setup config using the packed
``circleci/continuation`` (its job; or ``circleci/path-filtering``'s parameters and continuation's
command, as the path-filtering orb's ``filter`` job does) continues its pipeline on a real
`circlet serve` and its embedded runner, and the continued pipeline runs its jobs. (The ``filter`` job
itself also needs mikefarah's yq, which it downloads from GitHub when the host lacks it.)"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.config.conftest import shared_config_dir
from tests.conftest import LiveServer, free_port, server_env
from tests.e2e.helpers import Api
from tests.pipelines.helpers import make_repo

ORBS = shared_config_dir() / "orbs" / "circleci"
CONTINUATION = """
version: 2.1
setup: true
orbs:
  continuation: circleci/continuation@1.0.0
workflows:
  setup:
    jobs:
      - continuation/continue:
          configuration_path: .circleci/continued.yml
          parameters: '{"greeting": "hello from the setup job"}'
"""
PATH_FILTERING = """
version: 2.1
setup: true
orbs:
  path-filtering: circleci/path-filtering@2.1.0
  continuation: circleci/continuation@2.0.1
jobs:
  filter:
    docker: [{image: cimg/base:stable}]
    steps:
      - checkout
      - path-filtering/set-parameters:
          base-revision: main
          output-path: parameters.json
          mapping: |
            src/.* greeting src-changed
      - continuation/continue:
          configuration_path: .circleci/continued.yml
          parameters: parameters.json
workflows:
  setup:
    jobs: [filter]
"""
CONTINUED = """
version: 2.1
parameters:
  greeting: {type: string, default: nobody changed src}
jobs:
  continued:
    machine: true
    steps:
      - run: echo "<< pipeline.parameters.greeting >>" > "$MARKER"
workflows:
  after-setup:
    jobs: [continued]
"""

pytestmark = pytest.mark.skipif(not ORBS.is_dir(), reason=f"the packed orbs are not at {ORBS}")


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    home = tmp_path / "server-home"
    live = LiveServer(f"http://127.0.0.1:{free_port()}", home, server_env(home, database_url))
    live.start()
    for orb in ("continuation@1.0.0", "continuation@2.0.1", "path-filtering@2.1.0", "jq@3.0.2"):
        subprocess.run(
            [sys.executable, "-m", "circlet.cli", "orb", "import", str(ORBS / f"{orb}.yml")],
            env=live.env,
            check=True,
            capture_output=True,
        )
    yield live
    live.stop()


def test_unchanged_setup_configs_continue_through_the_orbs(
    server: LiveServer, tmp_path: Path, shared_with_jobs: Path
) -> None:
    account = server.admin("bootstrap", "--org", "e2e", "--user", "alice")
    api = Api(server.url, account["token"])
    for name, setup in (("continuation", CONTINUATION), ("path-filtering", PATH_FILTERING)):
        repo = tmp_path / name
        files = {".circleci/config.yml": setup, ".circleci/continued.yml": CONTINUED, "src/app.py": "print()\n"}
        make_repo(repo, files)
        server.admin("project", "create", f"gh/e2e/{name}", "--repo", str(repo))
        marker = shared_with_jobs / f"{name}.marker"  # where the job's user sees it
        api.post(f"/project/gh/e2e/{name}/envvar", 201, json={"name": "MARKER", "value": str(marker)})

        pipeline = api.post(f"/project/gh/e2e/{name}/pipeline", 201, json={"branch": "main"})
        workflows = api.workflows(pipeline["id"], 2)
        assert [w["name"] for w in workflows] == ["setup", "after-setup"]
        for workflow in workflows:
            assert api.settled(workflow["id"], "success", "failed", "error")["status"] == "success", api.jobs(
                workflow["id"]
            )
        expected = "hello from the setup job" if name == "continuation" else "src-changed"
        assert marker.read_text() == f"{expected}\n"
        assert api.get(f"/pipeline/{pipeline['id']}/config")["source"] == CONTINUED
