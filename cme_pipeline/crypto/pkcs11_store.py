"""The ``pkcs11:`` key store: every key a token object in a hardware security module.

Chosen by ``CME_KEYSTORE=pkcs11:token=LABEL?module-path=/path/lib.so&pin-value=PIN`` (or
``pin-source=file:/path``; RFC 7512). Tested against SoftHSM2 2.6 through python-pkcs11.

- secrets are GENERIC_SECRET keys, sensitive and non-extractable; ``derive`` is CKM_SHA256_HMAC
  computed in the token, so the stored secret never leaves it;
- signing keys are Ed25519 pairs (CKM_EDDSA in the token);
- agreement keys are P-256 pairs; ECDH1_DERIVE runs in the token and only the shared secret of
  one delivery (a session object read once, then destroyed) comes out;
- pinned public keys are CKO_DATA objects;
- ``destroy`` is ``C_DestroyObject`` on every object of the name.

Every object is labelled with its key name (CKA_LABEL); a pair's halves share a random CKA_ID.

Process model: one library instance and one logged-in R/W session per token per process, all
calls serialised by one lock (python-pkcs11 initialises the library without OS locking). After
``fork`` the child re-initialises the library on first use and opens its own session. Creation
and login take an inter-process file lock, so two workers never create the same name twice.
Errors never contain the PIN or key bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pkcs11
from pkcs11 import KDF, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import PKCS11Error, UserAlreadyLoggedIn

from cme_pipeline.crypto.keystore import check_peer_point, exists_already, missing
from cme_pipeline.errors import ConfigError

MAX_NAME_BYTES = 255  # SoftHSM2 has no CKA_LABEL limit (1000+ bytes tested); be portable.

# DER of the Ed25519 curve OID 1.3.101.112 (RFC 8410).  The PrintableString
# "edwards25519" (13 0c 65...) is accepted by SoftHSM2 2.6 too.
ED25519_EC_PARAMS = bytes.fromhex("06032b6570")
# DER of the P-256 curve OID 1.2.840.10045.3.1.7.
P256_EC_PARAMS = bytes.fromhex("06082a8648ce3d030107")


class KeyStoreError(ConfigError):
    """The token cannot be used (module, token, login)."""


class _Retry(Exception):
    pass


# --------------------------------------------------------------------------- URI


_PATH_ATTRS = {
    "token", "manufacturer", "serial", "model", "library-manufacturer",
    "library-description", "library-version", "object", "type", "id",
    "slot-description", "slot-manufacturer", "slot-id",
}
_QUERY_ATTRS = {"pin-source", "pin-value", "module-name", "module-path"}
_PCT_OK = re.compile(r"(?:[^%]|%[0-9A-Fa-f]{2})*\Z")


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of an RFC 7512 URI this module uses (PIN hidden from repr)."""

    token: str
    module_path: str
    pin: str = field(repr=False)
    serial: str | None = None
    path_attrs: dict[str, str] = field(default_factory=dict, repr=False)


def _pct_decode(value: str, attr: str) -> str:
    if not _PCT_OK.match(value):
        raise ValueError(f"pkcs11 URI: bad percent-encoding in '{attr}'")
    try:
        # RFC 7512: plain percent-encoding of UTF-8; '+' is NOT a space.
        return urllib.parse.unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"pkcs11 URI: '{attr}' is not valid UTF-8") from None


def _split_attrs(part: str, sep: str, known: set[str], where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if not part:
        return out
    for item in part.split(sep):
        if not item:
            continue
        name, eq, raw = item.partition("=")
        name = name.lower()
        if not eq or not name:
            raise ValueError(f"pkcs11 URI: malformed {where} attribute")
        if name not in known and not name.startswith("x-"):
            raise ValueError(f"pkcs11 URI: unknown {where} attribute '{name[:32]}'")
        if name in out:
            raise ValueError(f"pkcs11 URI: attribute '{name}' given twice")
        out[name] = _pct_decode(raw, name)
    return out


def _read_pin_source(source: str) -> str:
    if source.startswith("file:"):
        parsed = urllib.parse.urlsplit(source)
        if parsed.netloc not in ("", "localhost"):
            raise ValueError("pkcs11 URI: pin-source must be a local file: URI")
        path = parsed.path
    elif source.startswith("/"):
        path = source  # common non-URI form (p11-kit, OpenSC)
    else:
        raise ValueError("pkcs11 URI: pin-source must be 'file:/path' or an absolute path")
    try:
        with open(path, "rb") as fh:
            data = fh.read(4096)
    except OSError as exc:
        raise ValueError(f"pkcs11 URI: cannot read pin-source file ({exc.strerror})") from None
    try:
        pin = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ValueError("pkcs11 URI: pin-source file is not UTF-8") from None
    if not pin:
        raise ValueError("pkcs11 URI: pin-source file is empty")
    return pin


def parse_pkcs11_uri(uri: str) -> Pkcs11Uri:
    """Parse ``pkcs11:token=L?module-path=/x.so&pin-value=..`` (or ``pin-source=file:/p``)."""
    if not isinstance(uri, str) or not uri[:7].lower() == "pkcs11:":
        raise ValueError("pkcs11 URI: must start with 'pkcs11:'")
    rest = uri[7:]
    if "#" in rest:
        raise ValueError("pkcs11 URI: fragments are not allowed")
    path_part, _, query_part = rest.partition("?")
    path = _split_attrs(path_part, ";", _PATH_ATTRS, "path")
    query = _split_attrs(query_part, "&", _QUERY_ATTRS, "query")
    token = path.get("token")
    if not token:
        raise ValueError("pkcs11 URI: missing 'token' (token label)")
    module_path = query.get("module-path")
    if not module_path:
        raise ValueError("pkcs11 URI: missing 'module-path'")
    if not os.path.isabs(module_path):
        raise ValueError("pkcs11 URI: 'module-path' must be absolute")
    if "pin-value" in query and "pin-source" in query:
        raise ValueError("pkcs11 URI: give only one of 'pin-value' and 'pin-source'")
    if "pin-value" in query:
        pin = query["pin-value"]
    elif "pin-source" in query:
        pin = _read_pin_source(query["pin-source"])
    else:
        raise ValueError("pkcs11 URI: missing 'pin-value' or 'pin-source'")
    if not pin:
        raise ValueError("pkcs11 URI: empty PIN")
    return Pkcs11Uri(token=token, module_path=module_path, pin=pin,
                     serial=path.get("serial"), path_attrs=path)


# ------------------------------------------------------------- process-wide state

_LOCK = threading.RLock()  # serialises every PKCS#11 call made by this module


def _reset_lock_in_child() -> None:
    global _LOCK  # a lock held by another thread at fork() time would never be released
    _LOCK = threading.RLock()
    _FLOCK_DEPTH.clear()


os.register_at_fork(after_in_child=_reset_lock_in_child)


@dataclass
class _Conn:
    session: Any
    refs: int = 0


@dataclass
class _LibState:
    lib: Any
    pid: int
    conns: dict[tuple[str, str | None], _Conn] = field(default_factory=dict)


_LIBS: dict[str, _LibState] = {}
_FLOCK_DEPTH: dict[str, int] = {}


def _lib_state(module_path: str) -> _LibState:
    """Load (once per process) or re-initialise (after fork) the PKCS#11 module."""
    real = os.path.realpath(module_path)  # python-pkcs11 caches by path *string*
    st = _LIBS.get(real)
    pid = os.getpid()
    if st is None:
        # Reuse a lib that other code loaded under another spelling of the path
        # (symlink): a second pkcs11.lib() would fail with "already initialized".
        loaded = getattr(pkcs11, "_loaded", {})  # python-pkcs11's private cache
        lib = next((v for k, v in loaded.items() if os.path.realpath(k) == real), None)
        try:
            st = _LibState(lib=lib if lib is not None else pkcs11.lib(real), pid=pid)
        except PKCS11Error as exc:
            raise KeyStoreError(f"cannot load PKCS#11 module {real}: {type(exc).__name__}"
                                f" {exc.args[0] if exc.args else ''}".rstrip()) from None
        if not st.lib.initialized:
            st.lib.initialize()
        _LIBS[real] = st
    elif st.pid != pid:
        # Forked child: parent's sessions/login are not ours.  Drop (never close:
        # handle numbers are reused after re-init) and C_Finalize + C_Initialize.
        st.conns.clear()
        st.lib.reinitialize()
        st.pid = pid
    return st


def _flock_path(uri: Pkcs11Uri) -> str:
    key = hashlib.sha256(f"{os.path.realpath(uri.module_path)}\0{uri.token}".encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"pkcs11-keystore-{key}.lock")


# ------------------------------------------------------------------ key store


class Pkcs11KeyStore:
    """Named keys in one PKCS#11 token.  Safe to share between threads."""

    def __init__(self, uri: str, *, lock_path: str | None = None) -> None:
        try:
            self._uri = parse_pkcs11_uri(uri)
        except ValueError as exc:
            raise ConfigError(f"CME_KEYSTORE: {exc}") from None
        self._lock_path = lock_path or _flock_path(self._uri)
        self._session: Any = None
        self._pid = 0

    def __repr__(self) -> str:
        return f"Pkcs11KeyStore(token={self._uri.token!r}, module={self._uri.module_path!r})"

    # -- session handling ------------------------------------------------------

    def _sess(self) -> Any:
        """Shared logged-in R/W session for this process (caller holds _LOCK)."""
        st = _lib_state(self._uri.module_path)
        if self._session is not None and self._pid == os.getpid():
            return self._session
        key = (self._uri.token, self._uri.serial)
        conn = st.conns.get(key)
        if conn is None:
            # SoftHSM2 rewrites token.object on every C_Login; a process that reads it
            # meanwhile (C_GetTokenInfo / C_Login) can be left with a broken token
            # (GeneralError/NoSuchToken until C_Initialize).  Serialise with the file
            # lock, and re-initialise + retry while we own no session in this process.
            for attempt in range(3):
                try:
                    with self._flock():
                        session = self._login(st)
                    break
                except _Retry:
                    if attempt == 2 or st.conns:
                        raise KeyStoreError(f"token {self._uri.token!r} not usable "
                                            "(not found, or concurrent login race)") from None
                    st.lib.reinitialize()
            conn = st.conns[key] = _Conn(session)
        conn.refs += 1
        self._session, self._pid = conn.session, os.getpid()
        return self._session

    def _login(self, st: _LibState) -> Any:
        kw: dict[str, Any] = {"token_label": self._uri.token}
        if self._uri.serial:
            kw["token_serial"] = self._uri.serial
        try:
            token = st.lib.get_token(**kw)
        except (pkcs11.NoSuchToken, pkcs11.exceptions.GeneralError):
            raise _Retry from None
        try:
            return token.open(rw=True, user_pin=self._uri.pin)
        except UserAlreadyLoggedIn:
            # Login is per token per process; someone else logged in already.
            return token.open(rw=True)
        except (pkcs11.exceptions.GeneralError, pkcs11.exceptions.UserPinNotInitialized):
            raise _Retry from None
        except PKCS11Error as exc:
            raise KeyStoreError(f"login to token {self._uri.token!r} failed: "
                                f"{type(exc).__name__}") from None

    @contextlib.contextmanager
    def _flock(self) -> Iterator[None]:
        """Inter-process exclusive lock (same host) for create and login; re-entrant.

        flock() is per open file, so a nested open+flock in this process would
        deadlock: track the depth (callers hold _LOCK, so no race on the dict).
        """
        if _FLOCK_DEPTH.get(self._lock_path, 0):
            _FLOCK_DEPTH[self._lock_path] += 1
            try:
                yield
            finally:
                _FLOCK_DEPTH[self._lock_path] -= 1
            return
        with open(self._lock_path, "a+b") as lf:
            fcntl.flock(lf, fcntl.LOCK_EX)  # released when lf is closed
            _FLOCK_DEPTH[self._lock_path] = 1
            try:
                yield
            finally:
                _FLOCK_DEPTH[self._lock_path] = 0

    def close(self) -> None:
        """Release this store's reference; the last one logs out and closes the session."""
        with _LOCK:
            if self._session is None or self._pid != os.getpid():
                self._session = None
                return
            st = _lib_state(self._uri.module_path)
            key = (self._uri.token, self._uri.serial)
            conn = st.conns.get(key)
            self._session = None
            if conn is not None:
                conn.refs -= 1
                if conn.refs <= 0:
                    del st.conns[key]
                    with self._flock():
                        conn.session.close()  # C_Logout + C_CloseSession

    def __enter__(self) -> Pkcs11KeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------

    @staticmethod
    def _check_name(name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("key name must be a non-empty str")
        if len(name.encode("utf-8")) > MAX_NAME_BYTES:
            raise ValueError(f"key name longer than {MAX_NAME_BYTES} bytes")

    @staticmethod
    def _id(name: str) -> bytes:
        # Random, not derived from the name: if two hosts sharing one HSM ever create the same
        # name at once, every process picks the same twin (the lowest id) and the pair halves
        # still match each other.
        del name
        return secrets.token_bytes(16)

    def _find(self, name: str, extra: dict[Attribute, Any] | None = None) -> list[Any]:
        tmpl: dict[Attribute, Any] = {Attribute.TOKEN: True, Attribute.LABEL: name}
        tmpl.update(extra or {})
        return list(self._sess().get_objects(tmpl))

    def _one(self, name: str, cls: ObjectClass, key_type: KeyType | None = None) -> Any:
        extra: dict[Attribute, Any] = {Attribute.CLASS: cls}
        if key_type is not None:
            extra[Attribute.KEY_TYPE] = key_type
        objs = self._find(name, extra)
        if not objs:
            raise missing(name)
        return min(objs, key=_object_id)  # a concurrent twin: every process picks the same one

    def _create(self, name: str, make: Callable[[Any], Any]) -> Any:
        """Create under the inter-process lock; refuse if the name exists."""
        self._check_name(name)
        with _LOCK, self._flock():
            if self._find(name):
                raise exists_already(name)
            return make(self._sess())

    # -- lifecycle ---------------------------------------------------------------

    def exists(self, name: str) -> bool:
        """True if any token object carries this name."""
        self._check_name(name)
        with _LOCK:
            return bool(self._find(name))

    def destroy(self, name: str) -> bool:
        """``C_DestroyObject`` every token object with this name; True if any existed."""
        self._check_name(name)
        with _LOCK:
            objs = self._find(name)
            for obj in objs:
                obj.destroy()
            return bool(objs)

    def names(self, prefix: str) -> list[str]:
        """Sorted distinct names under ``prefix`` (a full scan: PKCS#11 has no prefix search)."""
        with _LOCK:
            out: set[str] = set()
            for obj in self._sess().get_objects({Attribute.TOKEN: True}):
                label = obj[Attribute.LABEL]
                if label and label.startswith(prefix):
                    out.add(label)
            return sorted(out)

    # -- secrets -------------------------------------------------------------------

    def create_secret(self, name: str) -> None:
        """Generate a 256-bit sensitive, non-extractable GENERIC_SECRET key for HMAC."""
        def make(s: Any) -> Any:
            return s.generate_key(
                KeyType.GENERIC_SECRET, 256, label=name, id=self._id(name), store=True,
                template={
                    Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                    Attribute.SIGN: True, Attribute.VERIFY: False,
                    Attribute.ENCRYPT: False, Attribute.DECRYPT: False,
                    Attribute.WRAP: False, Attribute.UNWRAP: False, Attribute.DERIVE: False,
                    Attribute.PRIVATE: True, Attribute.MODIFIABLE: False,
                })
        self._create(name, make)

    def create_secrets(self, names: Sequence[str]) -> None:
        """Generate several secrets (a token object each; the token makes each durable itself)."""
        for name in names:
            if self.exists(name):
                raise exists_already(name)
        for name in names:
            self.create_secret(name)

    def derive(self, name: str, context: bytes) -> bytes:
        """``HMAC-SHA256(secret, context)``, computed inside the token (CKM_SHA256_HMAC)."""
        self._check_name(name)
        with _LOCK:
            key = self._one(name, ObjectClass.SECRET_KEY, KeyType.GENERIC_SECRET)
            return bytes(key.sign(bytes(context), mechanism=Mechanism.SHA256_HMAC))

    # -- Ed25519 -----------------------------------------------------------------

    def create_signing_key(self, name: str) -> bytes:
        """Generate an Ed25519 pair (private half non-extractable); return the raw public key."""
        ident = self._id(name)

        def make(s: Any) -> Any:
            return s.generate_keypair(
                KeyType.EC_EDWARDS, store=True,
                mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                public_template={
                    Attribute.EC_PARAMS: ED25519_EC_PARAMS, Attribute.LABEL: name,
                    Attribute.ID: ident, Attribute.TOKEN: True, Attribute.VERIFY: True,
                    Attribute.PRIVATE: False,
                },
                private_template={
                    Attribute.LABEL: name, Attribute.ID: ident, Attribute.TOKEN: True,
                    Attribute.SIGN: True, Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False, Attribute.PRIVATE: True,
                    Attribute.DERIVE: False,
                })
        pub, _private = self._create(name, make)
        with _LOCK:
            return _ec_point(bytes(pub[Attribute.EC_POINT]), 32)

    def sign(self, name: str, payload: bytes) -> bytes:
        """A pure Ed25519 signature (64 bytes) made in the token (CKM_EDDSA)."""
        self._check_name(name)
        with _LOCK:
            key = self._one(name, ObjectClass.PRIVATE_KEY, KeyType.EC_EDWARDS)
            return bytes(key.sign(bytes(payload), mechanism=Mechanism.EDDSA))

    # -- ECDH P-256 ----------------------------------------------------------------

    def create_agreement_key(self, name: str) -> bytes:
        """Generate a P-256 pair for ECDH; return the 65-byte uncompressed public point."""
        ident = self._id(name)

        def make(s: Any) -> Any:
            return s.generate_keypair(
                KeyType.EC, store=True, mechanism=Mechanism.EC_KEY_PAIR_GEN,
                public_template={
                    Attribute.EC_PARAMS: P256_EC_PARAMS, Attribute.LABEL: name,
                    Attribute.ID: ident, Attribute.TOKEN: True, Attribute.DERIVE: True,
                    Attribute.VERIFY: False, Attribute.PRIVATE: False,
                },
                private_template={
                    Attribute.LABEL: name, Attribute.ID: ident, Attribute.TOKEN: True,
                    Attribute.DERIVE: True, Attribute.SIGN: False, Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False, Attribute.PRIVATE: True,
                })
        pub, _private = self._create(name, make)
        with _LOCK:
            return _ec_point(bytes(pub[Attribute.EC_POINT]), 65)

    def agree(self, name: str, peer_public: bytes) -> bytes:
        """ECDH1_DERIVE (no KDF) in the token; return the 32-byte shared x-coordinate.

        The shared secret comes out through a session object (never stored in the token) that is
        destroyed at once; SoftHSM2 2.6 offers no KDF we could use instead (CKD_SHA256_KDF is
        refused), and HKDF over it happens in the caller.
        """
        self._check_name(name)
        check_peer_point(bytes(peer_public))  # refuse off-curve points before they reach the token
        with _LOCK:
            private = self._one(name, ObjectClass.PRIVATE_KEY, KeyType.EC)
            shared = private.derive_key(
                KeyType.GENERIC_SECRET, 256, store=False,
                mechanism=Mechanism.ECDH1_DERIVE,
                mechanism_param=(KDF.NULL, None, bytes(peer_public)),
                template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True, Attribute.TOKEN: False})
            try:
                return bytes(shared[Attribute.VALUE])
            finally:
                shared.destroy()

    # -- public values ---------------------------------------------------------------

    def put_public(self, name: str, public: bytes) -> None:
        """Pin another party's public key as a token DATA object."""
        def make(s: Any) -> Any:
            return s.create_object({
                Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: True, Attribute.PRIVATE: False,
                Attribute.LABEL: name, Attribute.APPLICATION: "cme-pipeline", Attribute.VALUE: bytes(public),
                Attribute.MODIFIABLE: False,
            })
        self._create(name, make)

    def public_key(self, name: str) -> bytes:
        """The public half of a pair (raw Ed25519, or an uncompressed P-256 point), or a pin."""
        self._check_name(name)
        with _LOCK:
            for obj in sorted(self._find(name), key=_object_id):
                cls = obj[Attribute.CLASS]
                if cls == ObjectClass.DATA:
                    return bytes(obj[Attribute.VALUE])
                if cls == ObjectClass.PUBLIC_KEY:
                    size = 32 if obj[Attribute.KEY_TYPE] == KeyType.EC_EDWARDS else 65
                    return _ec_point(bytes(obj[Attribute.EC_POINT]), size)
        raise missing(name)


def _object_id(obj: Any) -> bytes:
    try:
        return bytes(obj[Attribute.ID] or b"")
    except PKCS11Error:  # DATA objects have no CKA_ID
        return b""


def _ec_point(data: bytes, size: int) -> bytes:
    """CKA_EC_POINT: DER OCTET STRING (04 len ..) on SoftHSM2; some tokens return it raw."""
    if len(data) == size + 2 and data[0] == 0x04 and data[1] == size:
        return data[2:]
    if len(data) == size:
        return data
    raise KeyStoreError(f"unexpected CKA_EC_POINT length {len(data)}")
