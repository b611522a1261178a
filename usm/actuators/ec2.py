"""Cloud hosts on AWS EC2: launch, start, stop, terminate, one elastic IP per region, and the inventory sync.

What this fixes against the original (§4.5, §5.4, §13 items 14, 22, 26):

* usm only ever acts on what it made: every instance, volume and elastic IP it creates carries
  ``usm-managed=true`` (instances and volumes also ``usm-host=<usm host name>``), and an instance without that tag is
  refused with an :class:`Ec2Error` before any call that would change it;
* no credentials in files of the project: boto3's standard chain (environment, shared config, instance role) is the
  only source, and ``endpoint_url`` points the client at a local EC2 API (moto_server) for tests;
* waiting for a state polls only the instance waited for, every ``poll_interval`` seconds (5 s by default; the
  original polled a whole region every 50 ms), on an injected :class:`~usm.actuators.clock.Clock` so that tests
  need not wait;
* the AMI is found by a tag (``usm-image=docker-host`` by default) in each region instead of being hard-coded;
* a launch that fails leaves no instance behind, and the sync reports the regions it could not read instead of
  making their hosts look gone.

Errors are :class:`Ec2Error`: its ``transient`` flag says whether trying again later may succeed (throttling, 5xx,
no connection) or not (bad image, no permission, no capacity for that type), which is what a journal needs.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
)
from botocore.retries.standard import (
    RetryContext,
    ThrottledRetryableChecker,
    TransientRetryableChecker,
)

from usm.actuators.clock import WALL_CLOCK, Clock

MANAGED_TAG = ("usm-managed", "true")
"""On every resource usm creates; usm refuses to act on an instance without it."""
HOST_TAG = "usm-host"
"""The usm host name of an instance (the name placement and the inventory use)."""

LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
"""Instance states the sync reports: everything but ``terminated``, which is gone for good."""


@dataclass(frozen=True)
class Ec2Settings:
    """How usm uses EC2. Credentials are deliberately not here: boto3's standard chain supplies them."""

    regions: tuple[str, ...]  # where hosts may be launched; the sync reads exactly these
    image_tag: str = "usm-image=docker-host"  # KEY=VALUE of the AMI to launch, looked up in each region
    instance_type: str = "t2.micro"
    endpoint_url: str | None = None  # e.g. a local moto_server; None = AWS itself
    key_name: str | None = None  # EC2 key pair for SSH into new hosts
    security_groups: tuple[str, ...] = ()  # names; none = the VPC's default group
    sync_interval: float = 45.0  # seconds between two syncs; the caller schedules them
    poll_interval: float = 5.0  # seconds between two looks at an instance being waited for
    wait_timeout: float = 300.0  # seconds to wait for a state before giving up (a transient error)
    max_attempts: int = 5  # per API call, with botocore's standard retry mode (backoff with jitter)

    def __post_init__(self) -> None:
        if isinstance(self.regions, str) or not self.regions:
            raise ValueError("EC2 settings: regions must list at least one AWS region, e.g. ('eu-west-1',)")
        object.__setattr__(self, "regions", tuple(dict.fromkeys(self.regions)))  # a list from a file is fine too
        key, _, value = self.image_tag.partition("=")
        if not key or not value:
            raise ValueError(
                f"EC2 settings: image_tag {self.image_tag!r} must be KEY=VALUE, e.g. 'usm-image=docker-host'"
            )
        for name in ("sync_interval", "poll_interval", "wait_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"EC2 settings: {name} must be a positive number of seconds, not {getattr(self, name)!r}")
        if self.max_attempts < 1:
            raise ValueError(f"EC2 settings: max_attempts must be at least 1, not {self.max_attempts!r}")

    @property
    def image_filter(self) -> tuple[str, str]:
        key, _, value = self.image_tag.partition("=")
        return key, value


class Ec2Error(Exception):
    """An EC2 operation that failed. ``transient``: the same request may succeed later (throttling, a 5xx, no
    connection, a wait that timed out); otherwise it will keep failing until something is changed."""

    def __init__(self, operation: str, region: str, code: str, message: str, transient: bool) -> None:
        self.operation = operation
        self.region = region
        self.code = code
        self.message = message
        self.transient = transient
        kind = "transient, may succeed later" if transient else "permanent"
        super().__init__(f"EC2 {operation} in {region} failed [{code}, {kind}]: {message}")


NOT_MANAGED = "NotManagedByUsm"
NO_IMAGE = "NoTaggedImage"
REGION_NOT_CONFIGURED = "RegionNotConfigured"
WAIT_TIMEOUT = "WaitTimeout"
UNEXPECTED_STATE = "UnexpectedState"
NO_ELASTIC_IP = "NoElasticIp"

_THROTTLED = ThrottledRetryableChecker()
_TRANSIENT = TransientRetryableChecker()


def is_transient(error: Exception) -> bool:
    """Whether ``error`` (from botocore) may go away by itself: throttling (``RequestLimitExceeded``,
    ``Throttling``...), a 5xx answer or a connection problem; botocore's own retry checkers know the codes.
    EC2 answers a lack of capacity (``InsufficientInstanceCapacity``...) with a 500, but the same request keeps
    failing until another instance type or region is asked for, so those count as permanent."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code.removeprefix("Server.").startswith("Insufficient"):
            return False
        context = RetryContext(attempt_number=1, parsed_response=error.response)
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return _THROTTLED.is_retryable(context) or _TRANSIENT.is_retryable(context) or status >= 500
    return _TRANSIENT.is_retryable(RetryContext(attempt_number=1, caught_exception=error))


def as_ec2_error(error: Exception, operation: str, region: str) -> Ec2Error:
    """The :class:`Ec2Error` for a botocore exception, with a hint where the fix is on our side."""
    if isinstance(error, Ec2Error):
        return error
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = details.get("Code", "Unknown")
        message = details.get("Message", str(error))
        return Ec2Error(operation, region, code, message, is_transient(error))
    if isinstance(error, NoCredentialsError):
        return Ec2Error(operation, region, "NoCredentials",
                        "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, "
                        "or run where an instance role applies", False)
    if isinstance(error, NoRegionError):
        return Ec2Error(operation, region, "NoRegion", str(error), False)
    return Ec2Error(operation, region, type(error).__name__, str(error), is_transient(error))


@dataclass(frozen=True)
class CloudInstance:
    """A usm-managed EC2 instance as the inventory needs it."""

    host: str  # the usm host name (tag usm-host)
    instance_id: str
    region: str
    state: str  # pending, running, stopping, stopped, shutting-down, terminated
    instance_type: str
    image_id: str
    launched_at: datetime
    public_ip: str | None = None
    private_ip: str | None = None


@dataclass(frozen=True)
class ElasticIp:
    """The usm elastic IP of a region, and the instance it points to, if any."""

    region: str
    allocation_id: str
    public_ip: str
    association_id: str | None = None
    instance_id: str | None = None


@dataclass(frozen=True)
class CloudSync:
    """What a sync saw. ``failed``: region -> why it could not be read; the caller keeps that region's rows as they
    are rather than treating its hosts as gone."""

    instances: tuple[CloudInstance, ...]
    failed: Mapping[str, Ec2Error] = field(default_factory=dict)


def tags_of(resource: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags", ())}


def is_managed(resource: Mapping[str, Any]) -> bool:
    key, value = MANAGED_TAG
    return tags_of(resource).get(key) == value


def instance_from(description: Mapping[str, Any], region: str) -> CloudInstance:
    """A :class:`CloudInstance` from one ``Instances`` item of ``describe_instances``."""
    return CloudInstance(
        host=tags_of(description).get(HOST_TAG, description["InstanceId"]),
        instance_id=description["InstanceId"],
        region=region,
        state=description["State"]["Name"],
        instance_type=description["InstanceType"],
        image_id=description.get("ImageId", ""),
        launched_at=description["LaunchTime"],
        public_ip=description.get("PublicIpAddress") or None,
        private_ip=description.get("PrivateIpAddress") or None,
    )


def elastic_ip_from(address: Mapping[str, Any], region: str) -> ElasticIp:
    return ElasticIp(region, address["AllocationId"], address["PublicIp"],
                     address.get("AssociationId") or None, address.get("InstanceId") or None)


def usm_tags(host: str | None = None) -> list[dict[str, str]]:
    tags = [{"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1]}]
    if host is not None:
        tags += [{"Key": HOST_TAG, "Value": host}, {"Key": "Name", "Value": host}]
    return tags


def ec2_filter(name: str, *values: str) -> dict[str, Any]:
    return {"Name": name, "Values": list(values)}


MANAGED = ec2_filter(f"tag:{MANAGED_TAG[0]}", MANAGED_TAG[1])
LIVE = ec2_filter("instance-state-name", *LIVE_STATES)


def named_filter(host: str) -> dict[str, Any]:
    return ec2_filter(f"tag:{HOST_TAG}", host)


class Ec2:
    """usm's cloud hosts in the configured regions. Every method raises :class:`Ec2Error` on failure."""

    def __init__(
        self,
        settings: Ec2Settings,
        session: boto3.session.Session | None = None,
        clock: Clock = WALL_CLOCK,
    ) -> None:
        self.settings = settings
        self.session = session or boto3.session.Session()
        self.clock = clock
        self._config = Config(retries={"mode": "standard", "max_attempts": settings.max_attempts})
        self._clients: dict[str, Any] = {}

    # --- plumbing ------------------------------------------------------------------------------------

    def client(self, region: str) -> Any:
        """The EC2 client of a configured region (made once; boto3 clients are thread-safe)."""
        if region not in self.settings.regions:
            raise Ec2Error("use", region, REGION_NOT_CONFIGURED,
                           f"region {region} is not among the configured regions ({', '.join(self.settings.regions)});"
                           " add it to the EC2 settings' regions so that the sync also sees its hosts", False)
        if region not in self._clients:
            self._clients[region] = self.session.client(
                "ec2", region_name=region, endpoint_url=self.settings.endpoint_url, config=self._config)
        return self._clients[region]

    def _call(self, region: str, operation: str, **parameters: Any) -> dict[str, Any]:
        """One API call; botocore retries transient failures ``max_attempts`` times before this raises."""
        client = self.client(region)
        try:
            return getattr(client, operation)(**parameters)
        except (ClientError, BotoCoreError) as error:
            raise as_ec2_error(error, operation, region) from error

    def _describe(self, region: str, **parameters: Any) -> list[dict[str, Any]]:
        client = self.client(region)
        try:
            pages = client.get_paginator("describe_instances").paginate(**parameters)
            return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
        except (ClientError, BotoCoreError) as error:
            raise as_ec2_error(error, "describe_instances", region) from error

    # --- images --------------------------------------------------------------------------------------

    def image(self, region: str) -> str:
        """The id of the newest available AMI of this account carrying the image tag in ``region``."""
        key, value = self.settings.image_filter
        images = self._call(region, "describe_images", Owners=["self"],
                            Filters=[ec2_filter(f"tag:{key}", value), ec2_filter("state", "available")])["Images"]
        if not images:
            raise Ec2Error("find image", region, NO_IMAGE,
                           f"no available image of this account is tagged {key}={value} in {region}: tag the "
                           f"docker host image there (aws ec2 create-tags --resources ami-... --tags Key={key},"
                           f"Value={value}) or change the EC2 settings' image_tag", False)
        newest = max(images, key=lambda i: (i.get("CreationDate", ""), i["ImageId"]))
        return newest["ImageId"]

    # --- instances -----------------------------------------------------------------------------------

    def instance(self, region: str, instance_id: str) -> CloudInstance:
        """The instance, if usm manages it; an untagged instance is refused (``NotManagedByUsm``)."""
        found = self._describe(region, InstanceIds=[instance_id])
        if not found:
            raise Ec2Error("describe_instances", region, "InvalidInstanceID.NotFound",
                           f"no instance {instance_id} in {region}", False)
        if not is_managed(found[0]):
            key, value = MANAGED_TAG
            raise Ec2Error("act on instance", region, NOT_MANAGED,
                           f"instance {instance_id} has no tag {key}={value}; usm only acts on instances it launched "
                           f"(tag it {key}={value} and {HOST_TAG}=<name> if usm should manage it)", False)
        return instance_from(found[0], region)

    def named(self, host: str, regions: Iterable[str] | None = None) -> CloudInstance | None:
        """The live usm-managed instance called ``host`` (tag usm-host), in the configured regions or ``regions``."""
        for region in self.settings.regions if regions is None else regions:
            found = self._describe(region, Filters=[MANAGED, LIVE, named_filter(host)])
            if found:
                return instance_from(min(found, key=lambda i: i["LaunchTime"]), region)
        return None

    def launch(self, region: str, host: str | None = None, instance_type: str | None = None,
               wait: bool = True) -> CloudInstance:
        """Launch one docker host in ``region`` from the tagged image, named ``host`` (made up when not given), and
        wait until it runs. Launching a name that already runs returns that instance (a repeated step after a
        restart launches nothing). A launch that fails terminates whatever it created."""
        self.client(region)
        host = host or f"{region}-{secrets.token_hex(4)}"
        existing = self.named(host, [region])
        if existing is not None:
            return self.wait_for(region, existing.instance_id, "running") if wait else existing
        parameters: dict[str, Any] = {
            "ImageId": self.image(region),
            "InstanceType": instance_type or self.settings.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "ClientToken": uuid.uuid4().hex,  # the same token on botocore's retries: one launch
            "TagSpecifications": [{"ResourceType": kind, "Tags": usm_tags(host)} for kind in ("instance", "volume")],
        }
        if self.settings.key_name:
            parameters["KeyName"] = self.settings.key_name
        if self.settings.security_groups:
            parameters["SecurityGroups"] = list(self.settings.security_groups)
        try:
            launched = self._call(region, "run_instances", **parameters)["Instances"][0]
            if not wait:
                return instance_from(launched, region)
            return self.wait_for(region, launched["InstanceId"], "running")
        except BaseException:
            self._remove_launched(region, host)
            raise

    def _remove_launched(self, region: str, host: str) -> None:
        """Terminate every live instance named ``host`` (after a failed launch; best effort, the launch's own error
        is the one reported)."""
        try:
            instances = self._describe(region, Filters=[MANAGED, LIVE, named_filter(host)])
            ids = [i["InstanceId"] for i in instances]
            if ids:
                self._call(region, "terminate_instances", InstanceIds=ids)
        except Ec2Error:
            pass  # the sync lists it (tagged usm-managed), so a later terminate step can still remove it

    def start(self, region: str, instance_id: str, wait: bool = True) -> CloudInstance:
        self.instance(region, instance_id)
        self._call(region, "start_instances", InstanceIds=[instance_id])
        return self.wait_for(region, instance_id, "running") if wait else self.instance(region, instance_id)

    def stop(self, region: str, instance_id: str, wait: bool = True) -> CloudInstance:
        self.instance(region, instance_id)
        self._call(region, "stop_instances", InstanceIds=[instance_id])
        return self.wait_for(region, instance_id, "stopped") if wait else self.instance(region, instance_id)

    def terminate(self, region: str, instance_id: str, wait: bool = True) -> CloudInstance:
        """Terminate the instance; the region's elastic IP is taken off it first if it pointed there."""
        self.instance(region, instance_id)
        address = self.elastic_ip(region)
        if address is not None and address.instance_id == instance_id:
            self.disassociate_elastic_ip(region)
        self._call(region, "terminate_instances", InstanceIds=[instance_id])
        return self.wait_for(region, instance_id, "terminated") if wait else self.instance(region, instance_id)

    def wait_for(self, region: str, instance_id: str, state: str, timeout: float | None = None) -> CloudInstance:
        """Poll this one instance every ``poll_interval`` until it is in ``state``. An instance that is terminated
        while waiting for another state is a permanent error; running out of time (``wait_timeout``) a transient
        one. An instance not yet visible (EC2 is eventually consistent) is looked at again."""
        limit = self.settings.wait_timeout if timeout is None else timeout
        deadline = self.clock.now() + limit
        seen = "not visible yet"
        while True:
            try:
                current = self.instance(region, instance_id)
            except Ec2Error as error:
                if error.code != "InvalidInstanceID.NotFound":
                    raise
            else:
                if current.state == state:
                    return current
                seen = current.state
                if state != "terminated" and seen in ("shutting-down", "terminated"):
                    raise Ec2Error(f"wait for {state}", region, UNEXPECTED_STATE,
                                   f"instance {instance_id} is {seen} while waiting for it to be {state}", False)
            if self.clock.now() >= deadline:
                raise Ec2Error(f"wait for {state}", region, WAIT_TIMEOUT,
                               f"instance {instance_id} is still {seen} after {limit:g} s", True)
            self.clock.sleep(self.settings.poll_interval)

    # --- inventory -----------------------------------------------------------------------------------

    def region_instances(self, region: str) -> tuple[CloudInstance, ...]:
        """The live usm-managed instances of one region, by host name."""
        found = self._describe(region, Filters=[MANAGED, LIVE])
        return tuple(sorted((instance_from(i, region) for i in found), key=lambda i: (i.host, i.instance_id)))

    def sync(self) -> CloudSync:
        """Every live usm-managed instance of the configured regions (the manager calls this every
        ``sync_interval`` seconds), the regions read in parallel. A region that cannot be read is reported in
        ``failed``, not left out silently."""
        regions = self.settings.regions
        for region in regions:
            self.client(region)  # made here, in one thread: boto3 sessions are not thread-safe

        def read(region: str) -> tuple[CloudInstance, ...] | Ec2Error:
            try:
                return self.region_instances(region)
            except Ec2Error as error:
                return error

        with ThreadPoolExecutor(max_workers=min(8, len(regions))) as pool:
            results = dict(zip(regions, pool.map(read, regions)))
        instances = tuple(i for r in regions if not isinstance(results[r], Ec2Error) for i in results[r])
        failed = {r: result for r, result in results.items() if isinstance(result, Ec2Error)}
        return CloudSync(instances, failed)

    # --- elastic IPs, one per region -----------------------------------------------------------------

    def elastic_ip(self, region: str) -> ElasticIp | None:
        """The region's usm elastic IP (the one tagged usm-managed=true; the oldest allocation if there are
        several), or ``None``. Addresses without the tag are never looked at."""
        addresses = self._call(region, "describe_addresses", Filters=[MANAGED])["Addresses"]
        if not addresses:
            return None
        return elastic_ip_from(min(addresses, key=lambda a: a["AllocationId"]), region)

    def _require_elastic_ip(self, region: str, operation: str) -> ElasticIp:
        address = self.elastic_ip(region)
        if address is None:
            raise Ec2Error(operation, region, NO_ELASTIC_IP,
                           f"usm has no elastic IP in {region}; allocate one first", False)
        return address

    def allocate_elastic_ip(self, region: str) -> ElasticIp:
        """The region's usm elastic IP, allocated (and tagged) if it has none yet."""
        existing = self.elastic_ip(region)
        if existing is not None:
            return existing
        allocated = self._call(region, "allocate_address", Domain="vpc",
                               TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": usm_tags()}])
        return ElasticIp(region, allocated["AllocationId"], allocated["PublicIp"])

    def associate_elastic_ip(self, region: str, instance_id: str) -> ElasticIp:
        """Point the region's elastic IP at this usm-managed instance (moving it off another one if need be)."""
        self.instance(region, instance_id)
        address = self._require_elastic_ip(region, "associate_address")
        self._call(region, "associate_address", AllocationId=address.allocation_id, InstanceId=instance_id,
                   AllowReassociation=True)
        return self._require_elastic_ip(region, "associate_address")

    def disassociate_elastic_ip(self, region: str) -> ElasticIp:
        """Take the region's elastic IP off whatever it points to (nothing happens if it points nowhere)."""
        address = self._require_elastic_ip(region, "disassociate_address")
        if address.association_id is None:
            return address
        self._call(region, "disassociate_address", AssociationId=address.association_id)
        return self._require_elastic_ip(region, "disassociate_address")

    def release_elastic_ip(self, region: str) -> None:
        """Give the region's elastic IP back to AWS (taking it off its instance first); nothing if there is none."""
        address = self.elastic_ip(region)
        if address is None:
            return
        if address.association_id is not None:
            self._call(region, "disassociate_address", AssociationId=address.association_id)
        self._call(region, "release_address", AllocationId=address.allocation_id)


__all__ = [
    "HOST_TAG",
    "LIVE_STATES",
    "MANAGED_TAG",
    "NOT_MANAGED",
    "NO_ELASTIC_IP",
    "NO_IMAGE",
    "REGION_NOT_CONFIGURED",
    "UNEXPECTED_STATE",
    "WAIT_TIMEOUT",
    "CloudInstance",
    "CloudSync",
    "Ec2",
    "Ec2Error",
    "Ec2Settings",
    "ElasticIp",
    "as_ec2_error",
    "instance_from",
    "is_transient",
]
