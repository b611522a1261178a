"""Time Docker API calls over SSH the way usm makes them, and print the timings (no assertion).

Starts one pseudo-host (a private dockerd, and a real sshd whose sessions reach it: tests/services/dockerhost.py)
and, for each way of reaching it, times:

* ``connect``: a verified SSH connection and the first request;
* ``inspect xN``: one inspect of each of N containers (every one a different URL);
* ``launch+stop``: ``DockerContainers.launch`` of a container and its ``stop``, median of M.

Ways: the engine's unix socket (the floor); usm's SSH transport (one connection pool per host); and the same
transport with the Docker SDK's own pooling (one pool per request URL, so a new SSH channel running
``docker system dial-stdio`` for many requests).

    PYTHONPATH=. .venv/bin/python bench/docker_ssh.py [--containers 20] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import docker
from docker.transport import SSHHTTPAdapter

from tests.services.dockerd import busybox_image, remove_tree
from tests.services.dockerhost import DockerHost, client_key, short_tempdir
from usm.actuators import dockerhosts
from usm.actuators.docker import ContainerSettings, ContainerSpec, DockerContainers
from usm.actuators.dockerhosts import DockerAccess, DockerHosts

SERVE = ("sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait")


class PerURLPools(dockerhosts._VerifiedSSHAdapter):
    """usm's verified transport with the SDK's pooling put back (one pool per URL)."""

    get_connection = SSHHTTPAdapter.get_connection


def ssh_client(url: str, access: DockerAccess, adapter: type) -> docker.DockerClient:
    client = docker.DockerClient(base_url=url, use_ssh_client=True, version=access.api_version)
    client.api.mount("http+docker://ssh", adapter(url, access))
    return client


def run(label: str, connect, ids: list[str], image: str, runs: int) -> None:
    started = time.perf_counter()
    client = connect()
    client.version()
    connected = time.perf_counter() - started
    started = time.perf_counter()
    for container_id in ids:
        client.api.inspect_container(container_id)
    inspected = time.perf_counter() - started

    class One:
        def client(self, host: str) -> docker.DockerClient:
            return client

        def names(self) -> tuple[str, ...]:
            return ("h",)

    actuator = DockerContainers(One(), ContainerSettings(pull=False))
    cycles = []
    for n in range(runs):
        name = f"bench-{time.monotonic_ns()}"
        started = time.perf_counter()
        actuator.launch("h", ContainerSpec("bench", image, command=SERVE), name)
        actuator.stop("h", name)
        cycles.append(time.perf_counter() - started)
    client.close()
    print(f"| {label} | {connected * 1000:.0f} | {inspected * 1000:.0f} ({inspected / len(ids) * 1000:.1f} per call)"
          f" | {statistics.median(cycles) * 1000:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    workdir = short_tempdir("usm-bench-")
    identity, public = client_key(workdir)
    host = DockerHost(workdir / "h", public).start()
    try:
        engine = host.engine()
        image = busybox_image(engine)
        ids = [engine.containers.create(image, list(SERVE), network_mode="none").id for _ in range(args.containers)]
        known_hosts = workdir / "known_hosts"
        known_hosts.write_text(host.known_hosts_line + "\n")
        access = DockerAccess(known_hosts=known_hosts, identity=identity)
        print(f"load average before: {os.getloadavg()[0]:.2f}; {args.containers} containers, {args.runs} runs\n")
        print("| way | connect (ms) | inspect x N (ms) | launch+stop, median (ms) |")
        print("|---|---|---|---|")
        run("unix socket", host.engine, ids, image, args.runs)
        run("ssh, usm (one pool per host)", lambda: DockerHosts({"h": host.url}, access).client("h"), ids, image,
            args.runs)
        run("ssh, SDK pooling (one pool per URL)", lambda: ssh_client(host.url, access, PerURLPools), ids, image,
            args.runs)
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    finally:
        host.stop()
        remove_tree(workdir)


if __name__ == "__main__":
    main()
