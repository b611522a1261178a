"""usm's images built on a private Docker engine from what this machine has (no registry): the base by `docker
import` of this Python with usm's dependencies (deploy/images.py), usm's wheel on it, the master's image (also
through the compose file), and `usm --version` in a container without network. About a minute: the base is a
~900 MB file system."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import need
from tests.services.dockerd import Dockerd, remove_tree
from tests.services.dockerhost import short_tempdir

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
VERSION = "0.1.0"


@pytest.fixture(scope="module")
def engine():
    need("docker")
    workdir = short_tempdir("usm-deploy-")
    started = Dockerd(workdir / "d").start()
    try:
        yield started
    finally:
        started.stop()
        remove_tree(workdir)


def run(*argv: str, env: dict[str, str], cwd: Path = DEPLOY) -> str:
    result = subprocess.run(argv, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_the_base_and_the_master_image_build_here_and_run_usm_without_network(engine):
    compose = need("docker-compose")
    env = {"DOCKER_HOST": engine.url}
    built = run(sys.executable, str(DEPLOY / "images.py"), "all", "master", env=env)
    assert built.splitlines()[-2:] == [f"usm-runtime:{VERSION}", f"usm-master:{VERSION}"]
    versioned = run("docker", "run", "--rm", "--network", "none", f"usm-master:{VERSION}", "--version", env=env)
    assert versioned == f"usm, version {VERSION}\n"
    inside = run("docker", "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", f"usm-master:{VERSION}",
                 "-c", "id -un; nginx -v 2>&1; python3 -c 'import usm.manager.federation.roles, psycopg; print(1)'",
                 env=env)
    assert inside.splitlines() == ["usm", "nginx version: nginx/1.22.1", "1"]

    # The compose file is valid for Debian's docker-compose and builds the master's image from the same files.
    place = {"USM_LATITUDE": "38.72", "USM_LONGITUDE": "-9.14"}
    run(compose, "config", "-q", env={**env, **place})
    missing = subprocess.run([compose, "config", "-q"], cwd=DEPLOY, capture_output=True, text=True, check=False,
                             env={**os.environ, **env, "USM_LATITUDE": ""})
    assert missing.returncode != 0 and "the node's latitude" in missing.stderr
    run("docker", "rmi", f"usm-master:{VERSION}", env=env)
    run(compose, "build", "master", env={**env, **place})
    assert run("docker", "run", "--rm", "--network", "none", f"usm-master:{VERSION}", "--version", env=env) == \
        f"usm, version {VERSION}\n"
