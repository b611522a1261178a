"""moto_server: AWS's EC2 API, locally, on a loopback port.

`MotoServer(workdir).start()` listens on 127.0.0.1:<free port>; `reset()` clears every resource between tests
(POST /moto-api/reset). moto is strict here where real EC2 is: unknown AMIs and instance types are refused
(moto's MOTO_ENABLE_AMI_VALIDATION and MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION). Its default AMI catalogue is not
loaded: tests register the images they launch.

`fake_aws_credentials(monkeypatch)` puts moto's documented dummy credentials ("testing") in the test's environment
and hides any real AWS configuration, so boto3's ordinary credential chain finds them and nothing else.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

import pytest

from . import Service, free_port, in_ci

DUMMY = "testing"  # moto's documented dummy credential value, not a secret

SETTINGS = {
    "MOTO_ENABLE_AMI_VALIDATION": "true",
    "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true",
    "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
}


def moto_server_binary() -> str:
    """moto_server from this venv (the `dev` extra installs moto[server]); skip, or fail in CI, without it."""
    binary = Path(sys.executable).parent / "moto_server"
    if binary.exists():
        return str(binary)
    message = "moto_server is not installed (install the dev extra: uv pip install -e '.[dev]')"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


class MotoServer(Service):
    def __init__(self, workdir: Path):
        self.port = free_port()
        argv = [moto_server_binary(), "-H", "127.0.0.1", "-p", str(self.port)]
        super().__init__("moto", argv, Path(workdir), env=SETTINGS)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _post(self, path: str) -> int:
        request = urllib.request.Request(f"{self.url}{path}", method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status

    def start(self, ready=None, timeout: float = 30.0) -> MotoServer:
        def answers() -> bool:
            with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=2) as answer:
                return answer.status == 200

        super().start(ready or answers, timeout)
        return self

    def warm_up(self) -> None:
        """Make moto load its EC2 backend now (its first EC2 request takes ~6 s), so that no single test pays."""
        import boto3

        client = boto3.client("ec2", region_name="us-east-1", endpoint_url=self.url,
                              aws_access_key_id=DUMMY, aws_secret_access_key=DUMMY)
        client.describe_regions()

    def reset(self) -> None:
        """Forget every resource of every service and region."""
        self._post("/moto-api/reset")


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
