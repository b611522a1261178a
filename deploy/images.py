#!/usr/bin/env python3
"""Build usm's container images on a Docker engine that has no registry to pull from.

    python deploy/images.py base        # usm-base:VERSION, made from this machine's Python, by `docker import`
    python deploy/images.py wheel       # deploy/build/usm-VERSION-py3-none-any.whl (uv build)
    python deploy/images.py build [COMPONENT ...]   # usm-runtime, then each component (default: all)
    python deploy/images.py all         # the three above, in order

Run it with the Python of usm's environment (``.venv/bin/python``): the base image is that interpreter with the
distributions usm needs at run time (the closure of its ``install_requires``, as installed in the environment, plus
pip), the shared libraries all of their ELF files load (found by ``ldd``), a static busybox for ``/bin/sh``, and
nginx for the load-balancer API. Nothing is downloaded: the same versions that pass the tests here run in the
images. ``DOCKER_HOST`` chooses the engine (e.g. ``unix:///run/usm-docker.sock``).

Why not ``FROM debian`` + pip: there is no registry here to pull ``debian`` or ``python`` from, and ``pip install``
inside a build would fetch wheels again over the network; a debootstrap'd Debian would need its Python
dependencies rebuilt the same way. Copying what is installed makes the base in about a minute, offline.
"""

from __future__ import annotations

import argparse
import configparser
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from importlib.metadata import Distribution, PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
BUILD = DEPLOY / "build"
COMPONENTS = ("master", "worker", "location-monitor", "registration-client", "lb-api")
PREFIX = "/opt/python"  # where the interpreter lives in the images
USER, UID = "usm", 10001
STDLIB_LEFT_OUT = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "site-packages", "lib2to3",
                   "config-3.11-x86_64-linux-gnu"}
BUSYBOX_APPLETS = ("sh", "ls", "cat", "env", "mkdir", "rm", "cp", "mv", "ln", "chmod", "chown", "id", "ps", "kill",
                   "sleep", "wget", "unzip", "grep", "sed", "head", "tail", "true", "false", "echo", "printf")
EXTRA_BINARIES = ("/usr/sbin/nginx",)
EXTRA_FILES = ("/etc/nginx/mime.types", "/etc/ssl/certs/ca-certificates.crt")


def version() -> str:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config["metadata"]["version"]


def base_tag() -> str:
    return f"usm-base:{version()}"


# --- what goes into the base ----------------------------------------------------------------------------------------


def install_requires() -> list[Requirement]:
    """usm's run-time requirements as setup.cfg declares them (the installed metadata of an editable install can
    be older than the file)."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return [Requirement(line) for line in config["options"]["install_requires"].strip().splitlines()]


def runtime_distributions() -> list[Distribution]:
    """Every distribution usm's requirements need (markers evaluated, extras followed), plus pip (the component
    images install usm's wheel with it)."""
    found: dict[str, Distribution] = {}

    def visit(name: str, extras: Iterable[str] = ()) -> None:
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in found:
            return
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            raise SystemExit(f"{name} is required by usm but not installed in {sys.prefix}: install usm's "
                             "dependencies first (uv pip install -e .)") from None
        found[key] = dist
        for text in dist.requires or ():
            requirement = Requirement(text)
            wanted = requirement.marker is None or any(requirement.marker.evaluate({"extra": e})
                                                       for e in ("", *extras))
            if wanted:
                visit(requirement.name, requirement.extras)

    for requirement in install_requires():
        visit(requirement.name, requirement.extras)
    visit("pip")
    return [found[key] for key in sorted(found)]


def distribution_files(dist: Distribution) -> Iterator[tuple[Path, str]]:
    """(file on this machine, path inside site-packages) for every installed file of ``dist`` that lives in
    site-packages (console scripts and data outside it are left out)."""
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    for entry in dist.files or ():
        path = Path(dist.locate_file(entry)).resolve()
        if path.is_file() and site in path.parents:
            yield path, str(path.relative_to(site))


def stdlib_files() -> Iterator[tuple[Path, str]]:
    """The interpreter's standard library (tests, IDLE and tkinter left out), as (file, path inside the prefix)."""
    library = Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    for path in sorted(library.rglob("*")):
        relative = path.relative_to(library)
        if relative.parts[0] in STDLIB_LEFT_OUT or not path.is_file():
            continue
        yield path, f"lib/{library.name}/{relative}"


def is_elf(path: Path) -> bool:
    with open(path, "rb") as file:
        return file.read(4) == b"\x7fELF"


def shared_libraries(binaries: Iterable[Path]) -> set[Path]:
    """The system libraries (and the loader) the given ELF files load, as ``ldd`` resolves them here."""
    needed: set[Path] = set()
    binaries = [str(b) for b in binaries]
    for start in range(0, len(binaries), 200):  # one ldd for many files: it takes a list
        result = subprocess.run(["ldd", *binaries[start:start + 200]], capture_output=True, text=True, check=False)
        for line in result.stdout.splitlines():
            match = re.search(r"(?:=> )?(/\S+) \(0x", line)
            if match:
                needed.add(Path(match.group(1)))
    return needed


def rootfs_members() -> Iterator[tuple[str, Path | bytes, int]]:
    """(path in the image, source file or content, mode) of every file of the base image."""
    prefix = Path(sys.base_prefix)
    python = prefix / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    library = prefix / "lib" / f"libpython{sys.version_info.major}.{sys.version_info.minor}.so.1.0"
    site = f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
    files: list[tuple[str, Path]] = [(f"{PREFIX}/bin/{python.name}", python), (f"{PREFIX}/lib/{library.name}", library)]
    files += [(f"{PREFIX}/{inside}", path) for path, inside in stdlib_files()]
    for dist in runtime_distributions():
        files += [(f"{PREFIX}/{site}/{inside}", path) for path, inside in distribution_files(dist)]
    files += [(binary, Path(binary)) for binary in EXTRA_BINARIES]
    files += [(name, Path(name)) for name in EXTRA_FILES]
    elves = [path for _, path in files if path.suffix == ".so" or ".so." in path.name or path == python
             or str(path) in EXTRA_BINARIES]
    inside_image = {path for _, path in files}
    for lib in sorted(shared_libraries(p for p in elves if is_elf(p))):
        if lib.resolve() not in inside_image and not str(lib).startswith(str(prefix)):
            files.append((str(lib), lib.resolve()))  # symlinks like /lib64/ld-linux-x86-64.so.2 become copies
    for target, source in files:
        yield target, source, (0o755 if os.access(source, os.X_OK) else 0o644)
    yield "/bin/busybox", Path(shutil.which("busybox") or "/bin/busybox"), 0o755
    yield "/etc/passwd", (f"root:x:0:0:root:/root:/bin/sh\n{USER}:x:{UID}:{UID}:usm:/var/lib/usm:/bin/sh\n"
                          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n").encode(), 0o644
    yield "/etc/group", f"root:x:0:\n{USER}:x:{UID}:\nnogroup:x:65534:\n".encode(), 0o644


def write_rootfs(out: Path) -> int:
    """The base image's file system as a tar archive at ``out``; returns the number of files."""
    count = 0
    with tarfile.open(out, "w") as archive:
        for directory, mode, owner in (("/tmp", 0o1777, 0), ("/run", 0o755, 0), ("/var/lib/usm", 0o750, UID),
                                       ("/etc/usm", 0o755, 0), ("/root", 0o700, 0), ("/var/log/nginx", 0o755, 0)):
            info = tarfile.TarInfo(directory.lstrip("/"))
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, owner, owner
            archive.addfile(info)
        for target, source, mode in rootfs_members():
            info = tarfile.TarInfo(target.lstrip("/"))
            info.mode = mode
            if isinstance(source, bytes):
                info.size = len(source)
                archive.addfile(info, io.BytesIO(source))
            else:
                info.size = source.stat().st_size
                with open(source, "rb") as file:
                    archive.addfile(info, file)
            count += 1
        for applet in BUSYBOX_APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            archive.addfile(info)
        for name in ("python3", "python"):
            info = tarfile.TarInfo(f"{PREFIX.lstrip('/')}/bin/{name}")
            info.type, info.linkname = tarfile.SYMTYPE, f"python{sys.version_info.major}.{sys.version_info.minor}"
            archive.addfile(info)
    return count


# --- building -------------------------------------------------------------------------------------------------------


def docker(*arguments: str, input_file: Path | None = None) -> None:
    """The docker command line (DOCKER_HOST applies), with the classic builder: there is no buildx here."""
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    with open(input_file, "rb") if input_file else open(os.devnull, "rb") as stdin:
        subprocess.run(["docker", *arguments], env=env, stdin=stdin, check=True)


def build_base() -> str:
    with tempfile.TemporaryDirectory(prefix="usm-base-") as scratch:
        archive = Path(scratch) / "rootfs.tar"
        count = write_rootfs(archive)
        print(f"rootfs: {count} files, {archive.stat().st_size / 2**20:.0f} MiB", file=sys.stderr)
        changes = [f"ENV PATH={PREFIX}/bin:/usr/sbin:/usr/bin:/sbin:/bin", f"ENV LD_LIBRARY_PATH={PREFIX}/lib",
                   "ENV LANG=C.UTF-8", "ENV PYTHONDONTWRITEBYTECODE=1", "ENV PYTHONUNBUFFERED=1",
                   'CMD ["/bin/sh"]']
        docker("import", *(a for change in changes for a in ("--change", change)), "-", base_tag(),
               input_file=archive)
    return base_tag()


def build_wheel() -> Path:
    BUILD.mkdir(exist_ok=True)
    for old in BUILD.glob("usm-*.whl"):
        old.unlink()
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    command = [uv, "build", "--wheel"] if uv else [sys.executable, "-m", "build", "--wheel"]
    subprocess.run([*command, "--out-dir", str(BUILD), str(ROOT)], check=True)
    return next(BUILD.glob("usm-*.whl"))


def build_images(components: Iterable[str]) -> list[str]:
    """usm-runtime (the base with usm installed from the wheel), then each component on it."""
    if not any(BUILD.glob("usm-*.whl")):
        raise SystemExit(f"no wheel in {BUILD}: run `{sys.argv[0]} wheel` first")
    tags = []
    for name in ("runtime", *components):
        tag = f"usm-{name}:{version()}"
        base = f"BASE={base_tag()}" if name == "runtime" else f"RUNTIME=usm-runtime:{version()}"
        docker("build", "--network", "none", "--build-arg", base, "-f", str(DEPLOY / name / "Dockerfile"), "-t", tag,
               str(BUILD))
        tags.append(tag)
    return tags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("base", "wheel", "build", "all"))
    parser.add_argument("components", nargs="*", help=f"the component images to build: {', '.join(COMPONENTS)} "
                                                      "(default: all)")
    args = parser.parse_args()
    unknown = sorted(set(args.components) - set(COMPONENTS))
    if unknown:
        parser.error(f"no component {', '.join(unknown)}; there are: {', '.join(COMPONENTS)}")
    components = args.components or COMPONENTS
    if args.what in ("base", "all"):
        print(build_base())
    if args.what in ("wheel", "all"):
        print(build_wheel())
    if args.what in ("build", "all"):
        print("\n".join(build_images(components)))


if __name__ == "__main__":
    main()
