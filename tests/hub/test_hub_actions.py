"""Actions over the API on the simulated world ``usm serve`` wires (sock-shop): each checks its input, acts on
the world, mirrors the world into the store and is audited with its user."""

from __future__ import annotations

import base64

LONDON = {"latitude": 51.5072, "longitude": -0.1276}


def containers_on(admin, host: str) -> dict[str, str]:
    return {c["name"]: c["state"] for c in admin.get(f"/api/containers?host={host}&limit=1000").get_json()["items"]}


def test_a_container_launched_on_a_host_starts_there_and_then_runs(admin, world, clock):
    answer = admin.post("/api/actions/launch", json={"service": "sock-shop-carts", "host": "leiria"})
    assert answer.status_code == 200, answer.get_json()
    new = answer.get_json()["changed"]
    assert containers_on(admin, "leiria") == {new[0]: "starting"}
    clock.advance(60)
    assert admin.post("/api/actions/sync", json={"what": "containers"}).status_code == 200
    assert containers_on(admin, "leiria") == {new[0]: "running"}
    audit = admin.get("/api/audit?action=launch").get_json()["items"][0]
    assert (audit["user"], audit["outcome"], audit["target"]) == ("ada", "ok", "sock-shop-carts")


def test_a_container_launched_near_a_place_goes_to_the_closest_host_with_room(admin, world):
    answer = admin.post("/api/actions/launch", json={"service": "sock-shop-user", "near": LONDON})
    assert answer.status_code == 200, answer.get_json()
    name = answer.get_json()["changed"][0]
    assert admin.get(f"/api/containers/{name}").get_json()["host"] == "frankfurt-1"  # 640 km, leiria is 1,600


def test_a_launch_that_names_nothing_real_is_422_and_does_nothing(admin, world):
    before = admin.get("/api/containers").get_json()["total"]
    both = admin.post("/api/actions/launch", json={"service": "sock-shop-user", "host": "leiria", "near": LONDON})
    assert both.status_code == 422 and "either host or near" in str(both.get_json()["errors"])
    neither = admin.post("/api/actions/launch", json={"service": "sock-shop-user"})
    assert neither.status_code == 422
    unknown = admin.post("/api/actions/launch", json={"service": "nope", "host": "atlantis"}).get_json()
    assert unknown["status"] == 422 and set(unknown["errors"]) == {"service", "host"}
    off_map = admin.post("/api/actions/launch", json={"service": "sock-shop-user", "near": {"latitude": 91,
                                                                                           "longitude": 0}})
    assert off_map.status_code == 422 and "near.latitude" in off_map.get_json()["errors"]
    assert admin.get("/api/containers").get_json()["total"] == before


def test_hosts_stop_and_terminate_in_the_world_and_the_store(admin, world):
    admin.post("/api/actions/launch", json={"service": "sock-shop-carts", "host": "leiria"})
    stopped = admin.post("/api/actions/hosts/leiria/stop")
    assert stopped.status_code == 200, stopped.get_json()
    assert admin.get("/api/edge-hosts/leiria").get_json()["state"] == "stopped"
    assert containers_on(admin, "leiria") == {}
    edge = admin.post("/api/actions/hosts/leiria/terminate")
    assert edge.status_code == 409 and "edge host" in edge.get_json()["message"]
    assert admin.post("/api/actions/hosts/london-1/terminate").status_code == 200
    assert admin.get("/api/cloud-hosts/london-1").status_code == 404
    start = admin.post("/api/actions/hosts/portland-edge/start")
    assert start.status_code == 409 and "launch a container" in start.get_json()["message"]
    assert admin.post("/api/actions/hosts/atlantis/stop").status_code == 404
    assert admin.post("/api/actions/hosts/leiria/explode").status_code == 404


def test_nodes_change_availability_and_role(admin, world):
    answer = admin.post("/api/actions/nodes/node-leiria", json={"availability": "drain", "role": "manager"})
    assert answer.status_code == 200, answer.get_json()
    node = admin.get("/api/nodes/node-leiria").get_json()
    assert (node["availability"], node["role"]) == ("drain", "manager")
    assert admin.post("/api/actions/nodes/node-leiria", json={}).status_code == 422
    assert admin.post("/api/actions/nodes/node-leiria", json={"availability": "asleep"}).status_code == 422
    assert admin.post("/api/actions/nodes/node-nowhere", json={"role": "worker"}).status_code == 404


def test_ssh_and_sftp_are_checked_and_every_one_is_audited(admin, viewer, world):
    command = admin.post("/api/actions/hosts/leiria/ssh", json={"command": "df -h /", "timeout": 5})
    assert command.status_code == 200
    assert command.get_json()["host"] == "leiria" and "simulated" in command.get_json()["stderr"]
    content = base64.b64encode(b"#!/bin/sh\necho hello\n").decode()
    upload = admin.post("/api/actions/hosts/leiria/sftp", json={"path": "/opt/usm/hello.sh", "content": content,
                                                                "mode": 0o755})
    assert upload.status_code == 200, upload.get_json()
    for bad, field_name in (({"path": "relative/file", "content": content}, "path"),
                            ({"path": "/opt/x", "content": "not base64!"}, "content"),
                            ({"path": "/opt/x", "content": content, "mode": 0o7777}, "mode")):
        answer = admin.post("/api/actions/hosts/leiria/sftp", json=bad)
        assert answer.status_code == 422 and field_name in answer.get_json()["errors"], bad
    assert admin.post("/api/actions/hosts/leiria/ssh", json={"command": ""}).status_code == 422
    assert admin.post("/api/actions/hosts/leiria/ssh", json={"command": "ls", "timeout": 10_000}).status_code == 422
    assert viewer.post("/api/actions/hosts/leiria/ssh", json={"command": "id"}).status_code == 403
    entries = {e["action"]: e for e in admin.get("/api/audit").get_json()["items"]}
    assert "df -h /" in entries["ssh"]["detail"] and entries["ssh"]["user"] == "ada"
    assert "/opt/usm/hello.sh" in entries["sftp"]["detail"] and '"bytes": 21' in entries["sftp"]["detail"]


def test_a_hub_without_a_world_refuses_actions_and_says_why(admin):
    answer = admin.post("/api/actions/hosts/leiria/ssh", json={"command": "uptime"})
    assert answer.status_code == 503 and "usm serve" in answer.get_json()["message"]
    entry = admin.get("/api/audit?action=ssh").get_json()["items"][0]
    assert entry["outcome"] == "refused" and "uptime" in entry["detail"]


def test_the_world_leaves_rows_of_hosts_it_does_not_know_alone(admin, world):
    made = admin.post("/api/edge-hosts", json={"name": "madrid", "latitude": 40.42, "longitude": -3.70, "cpu": 4.0,
                                               "ram": 2**32, "disk": 2**36, "username": "usm",
                                               "public_dns_name": "madrid.example"})
    assert made.status_code == 201
    assert admin.post("/api/containers", json={"name": "mine", "service": "sock-shop-user", "host": "madrid",
                                               "state": "running"}).status_code == 201
    assert admin.post("/api/actions/sync", json={}).status_code == 200
    assert containers_on(admin, "madrid") == {"mine": "running"}
    assert admin.get("/api/edge-hosts/madrid").status_code == 200
