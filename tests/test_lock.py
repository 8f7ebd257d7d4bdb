"""requirements/lock.txt: the versions the README's numbers and this suite were measured
with. The README's commands install within it (requirements/cpu.txt), so a new user runs
what was tested; these checks fail when the environment and the lock drift apart."""

import re
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.workflow_helpers import REPO

LOCK = REPO / "requirements" / "lock.txt"


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version and re.fullmatch(r"[\w.+!-]+", version), f"not a pin: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def test_the_install_commands_use_the_lock_and_the_cpu_torch():
    cpu = (REPO / "requirements" / "cpu.txt").read_text().splitlines()
    assert "-c lock.txt" in cpu and "torch==2.13.0" in cpu
    assert "torch" not in locked()  # clusters keep their own build


def test_every_locked_package_is_installed_at_its_version():
    drift = {}
    for name, version in locked().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            drift[name] = (version, installed)
    assert not drift, f"lock vs installed: {drift}; reinstall with requirements/cpu.txt"


def test_every_dependency_of_the_project_is_locked():
    pins = locked()
    requires = [Requirement(r) for r in metadata.requires("overtrained") or []]
    wanted = {
        canonicalize_name(r.name)
        for r in requires
        if r.marker is None or r.marker.evaluate({"extra": "dev"})
    }
    missing = sorted(wanted - set(pins) - {"torch"})
    assert not missing, f"add to requirements/lock.txt (see its header): {missing}"
