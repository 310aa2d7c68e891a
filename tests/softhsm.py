"""SoftHSM2 tokens for the ``pkcs11:`` key store: a real PKCS#11 module, tokens made per test.

``SOFTHSM2_CONF`` is set once for the whole test session (SoftHSM2 reads it when the library is
first loaded, and child processes inherit it). Each token gets its own label, so tests never see
each other's keys, exactly as two LAs' tokens in an HSM would not.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

MODULE_CANDIDATES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                     "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so")
USER_PIN, SO_PIN = "246810", "13579111"
INSTALL = "apt-get install -y softhsm2"


def softhsm_module() -> str:
    """The SoftHSM2 PKCS#11 module, or a test failure naming the one command that installs it."""
    found = next((m for m in MODULE_CANDIDATES if Path(m).is_file()), None)
    if found is None or shutil.which("softhsm2-util") is None:
        pytest.fail(f"SoftHSM2 is not installed; run: {INSTALL}  (make test does this where it can)")
    return found


_labels = itertools.count(1)


def new_token(label_prefix: str = "cme") -> str:
    """Initialise a fresh token and return its ``pkcs11:`` URI (PIN from a file, as in production)."""
    module = softhsm_module()
    label = f"{label_prefix}-{os.getpid()}-{next(_labels)}"
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", USER_PIN, "--so-pin", SO_PIN],
        check=True, capture_output=True, env=os.environ.copy(),
    )
    pin_file = Path(os.environ["SOFTHSM2_CONF"]).parent / f"{label}.pin"
    pin_file.write_text(USER_PIN + "\n")
    pin_file.chmod(0o600)
    return f"pkcs11:token={label}?module-path={module}&pin-source=file:{pin_file}"


@pytest.fixture(scope="session", autouse=True)
def softhsm_conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One SoftHSM2 configuration and token directory for the session."""
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    before = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    yield conf
    if before is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = before


KEYSTORES = ("file", "pkcs11")


def keystore_env(backend: str) -> dict[str, str]:
    """The environment that selects a backend: nothing for ``file:`` (the default), a new token else."""
    return {"CME_KEYSTORE": new_token()} if backend == "pkcs11" else {}


@pytest.fixture(params=KEYSTORES)
def keystore_backend(request: pytest.FixtureRequest) -> str:
    """Each test that takes this runs once per key store backend."""
    backend: str = request.param
    return backend


@pytest.fixture(scope="module", params=KEYSTORES)
def module_keystore_backend(request: pytest.FixtureRequest) -> str:
    """The same for module-scoped fixtures (a home built once per module): every test of the
    module runs once per backend, all of one backend's tests together."""
    backend: str = request.param
    return backend


def use_keystore(mp: pytest.MonkeyPatch, backend: str) -> dict[str, str]:
    """Select ``backend`` in this process's environment too, and return its environment.

    Pass the result to ``load_settings(..., environ=...)``: code that reads the settings from the
    environment (pipeline steps, the CLI, child processes) then finds the same key store.
    """
    env = keystore_env(backend)
    if env:
        mp.setenv("CME_KEYSTORE", env["CME_KEYSTORE"])
    else:
        mp.delenv("CME_KEYSTORE", raising=False)
    return env


def keystore_files(uri: str) -> Path:
    """Where a key store's bytes are on disk: the ``file:`` directory, or SoftHSM2's token
    directory (every token of the session: a scan of it is a superset of the one token's)."""
    if uri.startswith("file:"):
        return Path(uri.removeprefix("file:"))
    conf = Path(os.environ["SOFTHSM2_CONF"]).read_text()
    found = re.search(r"^directories\.tokendir\s*=\s*(.+)$", conf, re.MULTILINE)
    assert found, conf
    return Path(found.group(1).strip())


KeystoreEnv = Callable[[], dict[str, str]]
