"""Setup jobs continue their pipeline on the circlet server that runs them.

CircleCI's ``continuation`` orb (and ``path-filtering``, which calls it, and ``orb-tools``, which
copies it) continues a pipeline with ``curl ... https://${CIRCLECI_DOMAIN}/api/v2/pipeline/continue``:
the scheme is fixed, and ``CIRCLECI_DOMAIN`` is set in the step's own environment from an orb parameter
defaulting to ``circleci.com``, so no variable a runner gives the job can point that call elsewhere.
A setup job (one that holds ``CIRCLE_CONTINUATION_KEY``) therefore finds a ``curl`` first on its
``PATH`` that sends that exact URL to this runner's server, and otherwise runs the real curl with its
arguments untouched. The key is circlet's, so the call could only ever have meant circlet (sent to
circleci.com it would be refused, and would have handed the key to a third party)."""

from __future__ import annotations

import shlex
from pathlib import Path

CONTINUE_PATH = "/api/v2/pipeline/continue"
CIRCLECI_DOMAIN = "circleci.com"
"""What the orbs' ``circleci_domain`` parameter (or ``circleci-api-host``) defaults to."""


def curl_wrapper(bin_dir: Path, server_url: str) -> str:
    """The wrapper's text: finds the real curl on ``PATH`` (skipping ``bin_dir``), then rewrites
    any argument that is the continuation URL of circleci.com or of ``$CIRCLECI_DOMAIN``."""
    target = shlex.quote(server_url.rstrip("/") + CONTINUE_PATH)
    return f"""#!/bin/sh
# circlet: the continuation orbs' call goes to the server running this setup job ({CONTINUE_PATH});
# every other use of curl is the real curl's, unchanged.
real=
set -f
saved_ifs=$IFS
IFS=:
for dir in $PATH; do
  if [ "$dir" != {shlex.quote(str(bin_dir))} ] && [ -x "$dir/curl" ] && [ ! -d "$dir/curl" ]; then
    real=$dir/curl
    break
  fi
done
IFS=$saved_ifs
set +f
if [ -z "$real" ]; then
  echo "curl: command not found" >&2
  exit 127
fi
for argument do
  shift
  case $argument in
    "https://{CIRCLECI_DOMAIN}{CONTINUE_PATH}"|"https://${{CIRCLECI_DOMAIN:-{CIRCLECI_DOMAIN}}}{CONTINUE_PATH}")
      argument={target} ;;
  esac
  set -- "$@" "$argument"
done
exec "$real" "$@"
"""


def install_curl_wrapper(bin_dir: Path, server_url: str) -> None:
    """Put the wrapper in ``bin_dir`` (first on the job's ``PATH``)."""
    wrapper = bin_dir / "curl"
    wrapper.write_text(curl_wrapper(bin_dir, server_url))
    wrapper.chmod(0o755)
