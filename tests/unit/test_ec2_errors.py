"""Which EC2 errors are transient, and the EC2 settings' checks (no EC2 needed: botocore's own error values)."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from usm.actuators.ec2 import Ec2Error, Ec2Settings, as_ec2_error, is_transient


def answer(code: str, status: int) -> ClientError:
    """The ClientError botocore raises when EC2 answers ``status`` with this error code."""
    response = {"Error": {"Code": code, "Message": f"{code} happened"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "RunInstances")


@pytest.mark.parametrize(("code", "status"), [
    ("RequestLimitExceeded", 503),
    ("RequestLimitExceeded", 400),
    ("Throttling", 400),
    ("ThrottlingException", 400),
    ("InternalError", 500),
    ("Unavailable", 503),
    ("ServiceUnavailable", 503),
    ("SomethingNew", 502),
    ("RequestTimeout", 400),
])
def test_throttling_and_server_side_failures_are_transient(code: str, status: int) -> None:
    error = as_ec2_error(answer(code, status), "run_instances", "eu-west-1")
    assert error.transient and error.code == code
    assert "transient" in str(error) and "eu-west-1" in str(error) and code in str(error)


@pytest.mark.parametrize(("code", "status"), [
    ("InvalidAMIID.NotFound", 400),
    ("InvalidAMIID.Malformed", 400),
    ("UnauthorizedOperation", 403),
    ("AuthFailure", 401),
    ("InvalidParameterValue", 400),
    ("InsufficientInstanceCapacity", 500),  # EC2 sends a 500, but the same request keeps failing
    ("InsufficientHostCapacity", 500),
    ("InstanceLimitExceeded", 400),
])
def test_errors_that_repeat_until_something_changes_are_permanent(code: str, status: int) -> None:
    error = as_ec2_error(answer(code, status), "run_instances", "eu-west-1")
    assert not error.transient and error.code == code and "permanent" in str(error)


def test_connection_problems_are_transient_and_missing_credentials_permanent() -> None:
    assert is_transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
    assert is_transient(ReadTimeoutError(endpoint_url="http://127.0.0.1:9"))
    missing = as_ec2_error(NoCredentialsError(), "describe_instances", "eu-west-1")
    assert not missing.transient and "AWS_ACCESS_KEY_ID" in str(missing)


def test_an_ec2_error_passes_through_unchanged() -> None:
    error = Ec2Error("launch", "eu-west-1", "X", "y", True)
    assert as_ec2_error(error, "other", "us-east-1") is error


@pytest.mark.parametrize(("changes", "says"), [
    ({"regions": ()}, "at least one AWS region"),
    ({"regions": "eu-west-1"}, "at least one AWS region"),
    ({"image_tag": "docker-host"}, "KEY=VALUE"),
    ({"image_tag": "usm-image="}, "KEY=VALUE"),
    ({"poll_interval": 0}, "poll_interval"),
    ({"sync_interval": -45}, "sync_interval"),
    ({"wait_timeout": 0}, "wait_timeout"),
    ({"max_attempts": 0}, "max_attempts"),
])
def test_bad_settings_are_refused_with_what_to_write_instead(changes: dict, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        Ec2Settings(**{"regions": ("eu-west-1",), **changes})


def test_the_defaults_follow_the_original_where_it_was_right() -> None:
    settings = Ec2Settings(regions=("eu-west-1",))
    assert settings.sync_interval == 45.0  # the original's cloud host sync period
    assert settings.poll_interval >= 1.0  # not the original's 50 ms
    assert settings.image_filter == ("usm-image", "docker-host")
    assert settings.endpoint_url is None  # AWS itself unless told otherwise


def test_regions_may_come_as_a_list_and_are_kept_once_each_in_order() -> None:
    settings = Ec2Settings(regions=["eu-west-1", "ap-southeast-2", "eu-west-1"])
    assert settings.regions == ("eu-west-1", "ap-southeast-2")
