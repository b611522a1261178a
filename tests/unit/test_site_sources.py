"""The site file's cloud: and swarm: sections: read with their defaults, and refused where wrong, at their place."""

from __future__ import annotations

from pathlib import Path

import pytest

from usm.actuators.dockerhosts import DockerAccess
from usm.engine.yamldoc import InvalidSource
from usm.manager.site import load_site
from usm.manager.sitesources import SiteCloud, SiteSwarm

HOSTS = """\
hosts:
  - {name: lisbon, latitude: 38.72, longitude: -9.14, docker: "ssh://usm@127.0.0.1:2201", cpu: 4, ram: 8Gi,
     disk: 100Gi}
  - {name: dublin-1, kind: cloud, cloud_region: eu-west-1, latitude: 53.35, longitude: -6.26,
     docker: "ssh://ubuntu@127.0.0.1:2202", cpu: 2, ram: 4Gi, disk: 50Gi}
"""


def load(tmp_path: Path, text: str):
    path = tmp_path / "site.yaml"
    path.write_text(HOSTS + text)
    return load_site(path, DockerAccess(known_hosts=tmp_path / "known_hosts"))


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(InvalidSource) as refused:
        load(tmp_path, text)
    return [str(p) for p in refused.value.problems]


def test_without_the_sections_nothing_is_synced(tmp_path):
    site = load(tmp_path, "")
    assert (site.cloud, site.swarm) == (None, None)


def test_the_sections_with_their_defaults(tmp_path):
    site = load(tmp_path, "cloud: {regions: [eu-west-1]}\nswarm: {manager: lisbon}\n")
    assert site.cloud == SiteCloud(regions=("eu-west-1",))
    assert (site.cloud.sync_interval, site.cloud.image_tag, site.cloud.instance_type) == (45.0, "usm-image=docker-host",
                                                                                          "t2.micro")
    assert site.swarm == SiteSwarm("lisbon") and site.swarm.sync_interval == 10.0


def test_every_key_is_read(tmp_path):
    site = load(tmp_path, """\
cloud:
  regions: [eu-west-1, us-east-1, eu-west-1]
  endpoint_url: http://127.0.0.1:5055
  image_tag: role=gateway
  instance_type: t3.small
  key_name: usm
  security_groups: [usm-hosts, ssh]
  sync_interval: 1m
swarm: {manager: dublin-1, sync_interval: 30}
""")
    assert site.cloud == SiteCloud(("eu-west-1", "us-east-1"), "http://127.0.0.1:5055", "role=gateway", "t3.small",
                                   "usm", ("usm-hosts", "ssh"), 60.0)
    assert site.swarm == SiteSwarm("dublin-1", 30.0)


def test_an_unknown_region_and_a_cloud_host_outside_the_synced_regions_are_refused_where_written(tmp_path):
    found = problems(tmp_path, "cloud:\n  regions: [us-east-1, mars-north-1]\n")
    assert len(found) == 2
    assert found[0].startswith(f"{tmp_path / 'site.yaml'}:4:") and "cloud host 'dublin-1' is in eu-west-1, which " \
        "cloud.regions does not list" in found[0] and "hint: add eu-west-1 to cloud.regions" in found[0]
    assert found[1].startswith(f"{tmp_path / 'site.yaml'}:7:24: 'mars-north-1' is not an AWS region usm knows")
    assert "us-east-1" in found[1]  # the hint lists the regions


def test_the_swarm_manager_must_be_a_host_of_the_site(tmp_path):
    found = problems(tmp_path, "swarm:\n  manager: tokyo\n")
    assert found == [(f"{tmp_path / 'site.yaml'}:7:12: the swarm manager 'tokyo' is not a host of this site\n"
                     "    hint: name the host whose engine manages usm's swarm: lisbon, dublin-1")]


@pytest.mark.parametrize(("text", "message"), [
    ("cloud: {regions: [eu-west-1], sync_interval: soon}", "'soon' is not a duration"),
    ("cloud: {regions: [eu-west-1], sync_interval: 0s}", "the sync interval must be longer than 0 s, not 0s"),
    ("swarm: {manager: lisbon, sync_interval: -5}", "the sync interval must be longer than 0 s, not -5"),
    ("cloud: {regions: [eu-west-1], image_tag: docker-host}", "'docker-host' is not valid for cloud.image_tag"),
    ("cloud: {regions: []}", "cloud.regions"),
    ("cloud: {regions: [eu-west-1], endpoint_url: 127.0.0.1:5055}", "is not valid for cloud.endpoint_url"),
    ("swarm: {sync_interval: 10s}", "swarm is missing the required key 'manager'"),
])
def test_bad_values_are_refused_with_what_is_wrong(tmp_path, text, message):
    found = problems(tmp_path, text + "\n")
    assert len(found) == 1 and message in found[0], found


def test_credentials_have_no_place_in_the_site_file(tmp_path):
    found = problems(tmp_path, "cloud:\n  regions: [eu-west-1]\n  aws_secret_access_key: abc\n")
    assert len(found) == 1
    assert "unknown key 'aws_secret_access_key' in cloud" in found[0]
