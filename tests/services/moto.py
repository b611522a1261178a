"""moto_server: AWS's EC2 API, locally, on a loopback port (usm's lab launcher, `usm.lab.moto`).

`MotoServer(workdir).start()` listens on 127.0.0.1:<free port>; `reset()` clears every resource between tests
(POST /moto-api/reset). moto is strict here where real EC2 is: unknown AMIs and instance types are refused
(moto's MOTO_ENABLE_AMI_VALIDATION and MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION). Its default AMI catalogue is not
loaded: tests register the images they launch.

`fake_aws_credentials(monkeypatch)` puts moto's documented dummy credentials ("testing") in the test's environment
and hides any real AWS configuration, so boto3's ordinary credential chain finds them and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from usm.lab import moto as lab
from usm.lab.process import MissingBinary

from . import in_ci

DUMMY = "testing"  # moto's documented dummy credential value, not a secret


def moto_server_binary() -> str:
    """moto_server from this venv (the `dev` extra installs moto[server]); skip, or fail in CI, without it."""
    try:
        return lab.moto_server_binary()
    except MissingBinary as missing:
        message = str(missing)
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


class MotoServer(lab.MotoServer):
    def __init__(self, workdir: Path):
        moto_server_binary()
        super().__init__(workdir)

    def warm_up(self) -> None:
        """Make moto load its EC2 backend now (its first EC2 request takes ~6 s), so that no single test pays."""
        import boto3

        client = boto3.client("ec2", region_name="us-east-1", endpoint_url=self.url,
                              aws_access_key_id=DUMMY, aws_secret_access_key=DUMMY)
        client.describe_regions()


def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> None:
    """moto's dummy credentials in the environment, and no real AWS config or credentials file in reach."""
    empty = workdir / "aws-empty"
    empty.write_text("")
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", DUMMY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


__all__ = ["MotoServer", "fake_aws_credentials"]
