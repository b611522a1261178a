"""moto_server: AWS's EC2 API, locally, on a loopback port.

``MotoServer(workdir).start()`` listens on 127.0.0.1:<free port>; ``reset()`` clears every resource
(POST /moto-api/reset). moto is strict here where real EC2 is: unknown AMIs and instance types are
refused (moto's MOTO_ENABLE_AMI_VALIDATION and MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION). Its default
AMI catalogue is not loaded: whoever launches instances registers the images first.
"""

from __future__ import annotations

import shutil
import sys
import urllib.request
from pathlib import Path
from typing import Self

from usm.lab.process import MissingBinary, Process, free_port

SETTINGS = {
    "MOTO_ENABLE_AMI_VALIDATION": "true",
    "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true",
    "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
}


def moto_server_binary() -> str:
    """moto_server beside the running interpreter (usm's venv: the ``dev`` extra installs moto[server]), else on
    PATH."""
    beside = Path(sys.executable).parent / "moto_server"
    found = str(beside) if beside.exists() else shutil.which("moto_server")
    if not found:
        raise MissingBinary("moto_server is not installed: install usm's dev extra (uv pip install -e '.[dev]'), "
                            "which brings moto[server]")
    return found


class MotoServer(Process):
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

    def start(self, ready=None, timeout: float = 30.0) -> Self:
        def answers() -> bool:
            with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=2) as answer:
                return answer.status == 200

        super().start(ready or answers, timeout)
        return self

    def reset(self) -> None:
        """Forget every resource of every service and region."""
        self._post("/moto-api/reset")


__all__ = ["MotoServer", "moto_server_binary"]
