"""Drive real SCEP peers from Debian packages against a SCEP URL, for interop tests.

Peers: micromdm ``scepclient``/``scepserver`` (package ``scep``), strongSwan ``pki --scep``
(``strongswan-pki``) and ``certmonger``. docs/interop-notes.md explains every flag used here and
what each peer requires of a server (ciphers, digests, GET/POST, CA certificate handling).

Every helper works in its own ``workdir``, returns the path of what it produced, and raises
``PeerError`` carrying the peer's command, exit code, stdout and stderr when the peer fails.
Nothing here imports pqscep, so the helpers work whatever state the package is in.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest


class PeerError(RuntimeError):
    """A peer program failed; the message holds its command line and its output."""


def unavailable(reason: str) -> None:
    """Something a test needs is missing: CI must not silently skip what it is meant to test
    (under CI=true this fails the test); a developer machine may skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def find_tool(name: str) -> str:
    """Absolute path of a peer program; fails the test under CI=true, skips it elsewhere."""
    path = shutil.which(name)
    if path is None and os.path.isabs(name) and os.access(name, os.X_OK):
        path = name
    if path is None:
        unavailable(f"{name} is not installed (run scripts/install-test-deps.sh)")
    return path


def openssl_pq() -> str:
    """The OpenSSL >= 3.6 that scripts/test.sh builds with ../shared/tools/openssl-pq.sh."""
    path = os.environ.get("PQSCEP_OPENSSL")
    if not path:
        unavailable("PQSCEP_OPENSSL is not set: export PQSCEP_OPENSSL=$(../shared/tools/openssl-pq.sh)")
    return path


class OpenSSL:
    """The PQ OpenSSL command line. OPENSSL_CONF points at an empty file: the cached build has
    no openssl.cnf (make install_sw does not install one) and `req` refuses to run without it."""

    def __init__(self, path: str):
        self.path = path
        self.env = {**os.environ, "OPENSSL_CONF": os.devnull}

    def run(self, *args, check: bool = True, input: bytes | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([self.path, *map(str, args)], capture_output=True, env=self.env, input=input,
                              timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"openssl {' '.join(map(str, args))} exited {proc.returncode}\n"
                f"stdout: {proc.stdout.decode(errors='replace')[-2000:]}\n"
                f"stderr: {proc.stderr.decode(errors='replace')[-2000:]}"
            )
        return proc

    def fails(self, *args) -> str:
        """Run a command that must fail; return what it said."""
        proc = self.run(*args, check=False)
        assert proc.returncode != 0, f"openssl {' '.join(map(str, args))} unexpectedly succeeded"
        return proc.stderr.decode(errors="replace")


def openssl_pq_tool() -> OpenSSL:
    """`OpenSSL` for `openssl_pq()`, checked to be an executable OpenSSL >= 3.6 (set but
    unusable is a misconfiguration, not a reason to skip)."""
    path = openssl_pq()
    assert os.access(path, os.X_OK), f"PQSCEP_OPENSSL={path} is not an executable"
    tool = OpenSSL(path)
    version = tool.run("version").stdout.decode()
    match = re.match(r"OpenSSL (\d+)\.(\d+)", version)
    assert match and (int(match[1]), int(match[2])) >= (3, 6), f"PQSCEP_OPENSSL is not OpenSSL >= 3.6: {version}"
    return tool


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], *, cwd: Path, timeout: float, env: dict | None = None,
         stdout_path: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a peer; raise PeerError with everything it said if it fails or times out."""
    full_env = dict(os.environ, **(env or {}))
    with open(stdout_path, "wb") if stdout_path else contextlib.nullcontext(subprocess.PIPE) as out:
        try:
            proc = subprocess.run(cmd, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise PeerError(f"timed out after {timeout}s: {' '.join(map(str, cmd))}\n"
                            f"--- stdout\n{_text(e.stdout)}\n--- stderr\n{_text(e.stderr)}") from None
    if check and proc.returncode != 0:
        raise PeerError(f"exit code {proc.returncode}: {' '.join(map(str, cmd))}\n"
                        f"--- stdout\n{_text(proc.stdout)}\n--- stderr\n{_text(proc.stderr)}")
    return proc


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else str(data)


def verify_cert(ca_pem: Path | str, cert: Path | str, untrusted: Path | str | None = None) -> None:
    """``openssl verify`` the certificate against the CA (PEM files); PeerError unless OK."""
    cmd = [find_tool("openssl"), "verify", "-CAfile", str(ca_pem)]
    if untrusted:
        cmd += ["-untrusted", str(untrusted)]
    _run(cmd + [str(cert)], cwd=Path(cert).parent, timeout=30)


# --------------------------------------------------------------------------- micromdm scepclient

def run_scepclient(url: str, workdir: Path | str, challenge: str, cn: str, key_size: int = 2048,
                   timeout: float = 60, organization: str = "pqscep",
                   ca_fingerprint: str | None = None) -> Path:
    """Enroll with micromdm scepclient 2.1.0; returns the PEM certificate path.

    It sends PKCSReq signed with SHA-1 (sha1WithRSAEncryption in SignerInfo) and encrypted with
    single DES-CBC whatever GetCACaps says; it POSTs only when POSTPKIOperation is advertised.
    ``ca_fingerprint``: hex SHA-256 of the CA certificate (DER) to pin it.
    """
    workdir = Path(workdir).resolve()  # peers run with cwd=workdir
    workdir.mkdir(parents=True, exist_ok=True)
    # scepclient writes csr.pem (and self.pem on failure) into its working directory and
    # silently REUSES an existing csr.pem (old CN and challenge): never let one linger.
    for stale in ("csr.pem", "self.pem"):
        (workdir / stale).unlink(missing_ok=True)
    key, cert = workdir / "key.pem", workdir / "cert.pem"  # key is created when missing
    cmd = [find_tool("scepclient"), "-server-url", url, "-challenge", challenge,
           "-private-key", str(key), "-certificate", str(cert), "-cn", cn,
           "-organization", organization, "-keySize", str(key_size), "-debug"]
    if ca_fingerprint:
        cmd += ["-ca-fingerprint", ca_fingerprint]
    proc = _run(cmd, cwd=workdir, timeout=timeout)
    if not cert.exists():
        raise PeerError(f"scepclient wrote no certificate\n--- stderr\n{_text(proc.stderr)}")
    return cert


# --------------------------------------------------------------------------- strongSwan pki

def _key_usage(cert: Path) -> str:
    """The keyUsage line of a certificate, as ``openssl x509 -ext keyUsage`` prints it."""
    proc = _run([find_tool("openssl"), "x509", "-inform", "der", "-in", str(cert), "-noout",
                 "-ext", "keyUsage"], cwd=cert.parent, timeout=30)
    return _text(proc.stdout)


def strongswan_get_ca(url: str, workdir: Path | str, timeout: float = 60) -> tuple[Path, Path, Path]:
    """``pki --scepca``: fetch CA (and RA) certificates; returns (ca, enc, sig) DER paths.

    pki writes the root CA to ca.der (ca-1.der... for sub CAs) and non-CA certificates (RA) to
    ra.der, or ra-1.der, ra-2.der when there are several. With no RA, the CA does both jobs.
    """
    workdir = Path(workdir).resolve()  # peers run with cwd=workdir
    workdir.mkdir(parents=True, exist_ok=True)
    _run([find_tool("pki"), "--scepca", "--url", url, "--caout", "ca.der", "--raout", "ra.der",
          "--force"], cwd=workdir, timeout=timeout)
    ca = workdir / "ca.der"
    if not ca.exists():  # several roots are written as ca-root-N.der
        ca = sorted(workdir.glob("ca*.der"))[0]
    ras = sorted(workdir.glob("ra*.der"))
    if not ras:
        return ca, ca, ca
    enc = next((r for r in ras if "Key Encipherment" in _key_usage(r)), ras[0])
    sig = next((r for r in ras if "Digital Signature" in _key_usage(r)), ras[0])
    return ca, enc, sig


def _strongswan_scep(url: str, workdir: Path, key: Path, dn: str, challenge: str | None,
                     cipher: str, digest: str, interval: int, maxpolltime: int,
                     timeout: float, out: Path, extra: list[str]) -> Path:
    ca, enc, sig = strongswan_get_ca(url, workdir, timeout=timeout)
    cmd = [find_tool("pki"), "--scep", "--url", url, "--in", str(key), "--dn", dn,
           "--cacert-enc", str(enc), "--cacert-sig", str(sig), "--cipher", cipher,
           "--digest", digest, "--interval", str(interval), "--maxpolltime", str(maxpolltime),
           "--outform", "pem"]
    if ca not in (enc, sig):
        cmd += ["--cacert", str(ca)]
    if challenge is not None:
        cmd += ["--password", challenge]
    _run(cmd + extra, cwd=workdir, timeout=timeout, stdout_path=out)  # certificate on stdout
    if out.stat().st_size == 0:
        raise PeerError(f"pki --scep printed no certificate: {' '.join(cmd)}")
    return out


def run_strongswan_enroll(url: str, workdir: Path | str, challenge: str, cn: str,
                          key_size: int = 2048, cipher: str = "aes", digest: str = "sha256",
                          interval: int = 1, maxpolltime: int = 30, timeout: float = 60,
                          dn: str | None = None, extra_args: list[str] | None = None) -> Path:
    """Enroll (PKCSReq) with strongSwan 5.9.8 ``pki --scep``; returns the PEM certificate path.

    Beware of strongSwan 5.9.8's GetCACaps bug (docs/interop-notes.md): ``cipher="aes"`` only
    passes its check if the server advertises ``SHA-384``; ``cipher="des3"`` needs ``AES``
    advertised; ``digest="sha256"`` needs ``DES3`` or ``SHA-384``. It also insists that the
    CertRep SignerInfo signatureAlgorithm be rsaEncryption. PENDING is polled every
    ``interval`` seconds for at most ``maxpolltime`` seconds (CertPoll).
    """
    workdir = Path(workdir).resolve()  # peers run with cwd=workdir
    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / "key.der"
    if not key.exists():
        _run([find_tool("pki"), "--gen", "--type", "rsa", "--size", str(key_size), "--outform",
              "der"], cwd=workdir, timeout=timeout, stdout_path=key)
    return _strongswan_scep(url, workdir, key, dn or f"CN={cn}", challenge, cipher, digest,
                            interval, maxpolltime, timeout, workdir / "cert.pem",
                            list(extra_args or []))


def run_strongswan_renew(url: str, workdir: Path | str, old_cert: Path | str,
                         old_key: Path | str, cn: str | None = None,
                         challenge: str | None = None, key_size: int = 2048,
                         cipher: str = "aes", digest: str = "sha256", interval: int = 1,
                         maxpolltime: int = 30, timeout: float = 60,
                         extra_args: list[str] | None = None) -> Path:
    """Renew (RenewalReq, signed with the old cert/key) with a NEW key; returns new cert path.

    strongSwan 5.9.8 still requires --dn (taken from ``old_cert`` when ``cn`` is None) and only
    sends RenewalReq when GetCACaps passes its (buggy) Renewal check: ``DES3`` or ``SHA-384``
    advertised. ``challenge`` is optional for RenewalReq (micromdm wants it anyway).
    The new key is written to workdir/renew-key.der, the certificate to renew-cert.pem.
    """
    workdir = Path(workdir).resolve()  # peers run with cwd=workdir
    workdir.mkdir(parents=True, exist_ok=True)
    old_cert, old_key = Path(old_cert).resolve(), Path(old_key).resolve()
    if cn is not None:
        dn = f"CN={cn}"
    else:
        # pki --dn prints the subject as "asn1dn:#<hex DER>", quotes included.
        dn = _text(_run([find_tool("pki"), "--dn", "--in", str(old_cert)], cwd=workdir,
                        timeout=timeout).stdout).strip().strip('"')
    key = workdir / "renew-key.der"
    _run([find_tool("pki"), "--gen", "--type", "rsa", "--size", str(key_size), "--outform",
          "der"], cwd=workdir, timeout=timeout, stdout_path=key)
    extra = ["--cert", str(old_cert), "--key", str(old_key)] + list(extra_args or [])
    return _strongswan_scep(url, workdir, key, dn, challenge, cipher, digest, interval,
                            maxpolltime, timeout, workdir / "renew-cert.pem", extra)


# --------------------------------------------------------------------------- certmonger

# States that end a request: certmonger would retry CA_UNREACHABLE much later, a test must not.
_CM_FAILED = {"CA_REJECTED", "CA_UNREACHABLE", "CA_UNCONFIGURED", "NEED_GUIDANCE", "NEED_CA"}


def _cm_status(getcert: str, req_id: str, cwd: Path, env: dict) -> tuple[str, bool, str]:
    """(status, stuck, full listing) of a request, from ``getcert list -i``."""
    listing = _text(_run([getcert, "list", "-i", req_id], cwd=cwd, env=env, timeout=30).stdout)
    fields = {}
    for line in listing.splitlines():
        if line.startswith("\t") and ":" in line:
            key, _, value = line.strip().partition(":")
            fields.setdefault(key, value.strip())
    return fields.get("status", "UNKNOWN"), fields.get("stuck") == "yes", listing


def run_certmonger(url: str, workdir: Path | str, challenge: str, cn: str,
                   ca_cert: Path | str | None = None, key_size: int = 2048,
                   timeout: float = 60, poll_interval: float = 1.0) -> Path:
    """Enroll with certmonger 0.79.17 (getcert add-scep-ca + getcert request); returns PEM cert.

    certmonger runs as a private daemon for this call only: all its state lives under
    workdir/cm-state (never /var/lib/certmonger) and getcert reaches it through a private
    unix socket (``certmonger -n -L -P SOCK`` + ``CERTMONGER_PVT_ADDRESS``), so neither a
    system nor a session D-Bus is needed. If the server answers PENDING, the request is pushed
    with ``getcert refresh`` every ``poll_interval`` seconds until ``timeout``.

    ``ca_cert`` (PEM) is passed as ``add-scep-ca -N``; it is REQUIRED when GetCACert returns a
    single self-signed CA certificate (certmonger 0.79.17 otherwise has no trust anchor and
    fails with "certificate verify error"). certmonger sends PKIOperation with GET only,
    SHA-256 + rsaEncryption, AES-256-CBC, and cannot decrypt a single-DES CertRep.
    """
    workdir = Path(workdir).resolve()  # peers run with cwd=workdir
    state = workdir / "cm-state"
    for sub in ("requests", "cas", "tmp", "local", "config"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    sock, pidfile, log = state / "cm.sock", state / "cm.pid", workdir / "certmonger.log"
    sock.unlink(missing_ok=True)
    env = {"CERTMONGER_CONFIG_DIR": str(state / "config"),
           "CERTMONGER_REQUESTS_DIR": str(state / "requests"),
           "CERTMONGER_CAS_DIR": str(state / "cas"),
           "CERTMONGER_TMPDIR": str(state / "tmp"),
           "CERTMONGER_LOCAL_CA_DIR": str(state / "local"),
           "CERTMONGER_PVT_ADDRESS": f"unix:path={sock}"}
    getcert = find_tool("getcert")
    key, cert = workdir / "key.pem", workdir / "cert.pem"
    with open(log, "wb") as logf:
        daemon = subprocess.Popen([find_tool("certmonger"), "-n", "-L", "-P", str(sock), "-p",
                                   str(pidfile), "-d", "2"], cwd=workdir,
                                  env=dict(os.environ, **env), stdin=subprocess.DEVNULL,
                                  stdout=logf, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise PeerError(f"certmonger did not open {sock}\n{_tail(log)}")
            time.sleep(0.05)
        add = [getcert, "add-scep-ca", "-c", "pqscep", "-u", url]
        if ca_cert:
            add += ["-N", str(Path(ca_cert).resolve())]  # the daemon needs an absolute path
        _run(add, cwd=workdir, env=env, timeout=timeout)
        deadline = time.monotonic() + timeout
        request = [getcert, "request", "-c", "pqscep", "-I", "req", "-k", str(key), "-f",
                   str(cert), "-L", challenge, "-N", f"CN={cn}", "-g", str(key_size), "-w",
                   "--wait-timeout", str(int(timeout))]
        # -w exits non-zero when the request ends in any state but MONITORING: judge by status.
        subprocess.run(request, cwd=workdir, env=dict(os.environ, **env),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout + 10)
        status, stuck, listing = _cm_status(getcert, "req", workdir, env)
        while (status != "MONITORING" and not stuck and status not in _CM_FAILED
               and time.monotonic() < deadline):
            if status == "CA_WORKING":  # server said PENDING: poll now, not in hours
                subprocess.run([getcert, "refresh", "-i", "req"], cwd=workdir,
                               env=dict(os.environ, **env), capture_output=True, timeout=30)
            time.sleep(poll_interval)
            status, stuck, listing = _cm_status(getcert, "req", workdir, env)
        if status != "MONITORING" or not cert.exists():
            raise PeerError(f"certmonger request ended in {status}\n{listing}\n{_tail(log)}")
        return cert
    finally:
        stop_process(daemon)


_CM_SESSION_SCRIPT = r"""
set -u
# The daemon in session mode, as a user would run it: `certmonger -s -n` on this session bus.
certmonger -s -n -d 2 >"$CM_LOG" 2>&1 &
for _ in $(seq 100); do
  dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner string:org.fedorahosted.certmonger 2>/dev/null \
    | grep -q 'boolean true' && break
  sleep 0.1
done
getcert add-scep-ca -s -c pqscep -u "$CM_URL" -N "$CM_CA" || exit 10
getcert request -s -c pqscep -I req -k "$CM_KEY" -f "$CM_CERT" -L "$CM_CHALLENGE" \
  -N "CN=$CM_CN" -g 2048 -w --wait-timeout "$CM_TIMEOUT"
getcert list -s -i req
"""


def run_certmonger_session(url: str, workdir: Path | str, challenge: str, cn: str,
                           ca_cert: Path | str, timeout: float = 90) -> Path:
    """Enroll with certmonger apart from any system service: the daemon in session mode (`certmonger -s
    -n`) under `dbus-run-session`, driven by `getcert add-scep-ca -s` and `getcert request -s
    ... -w`. State directories are private (never /var/lib/certmonger). Returns the PEM cert."""
    workdir = Path(workdir).resolve()
    state = workdir / "cm-session"
    for sub in ("requests", "cas", "tmp", "local", "config"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    key, cert = workdir / "key.pem", workdir / "cert.pem"
    env = {"CERTMONGER_CONFIG_DIR": str(state / "config"),
           "CERTMONGER_REQUESTS_DIR": str(state / "requests"),
           "CERTMONGER_CAS_DIR": str(state / "cas"),
           "CERTMONGER_TMPDIR": str(state / "tmp"),
           "CERTMONGER_LOCAL_CA_DIR": str(state / "local"),
           "CM_LOG": str(workdir / "certmonger.log"), "CM_URL": url,
           "CM_CA": str(Path(ca_cert).resolve()), "CM_KEY": str(key), "CM_CERT": str(cert),
           "CM_CHALLENGE": challenge, "CM_CN": cn, "CM_TIMEOUT": str(int(timeout))}
    for tool in ("certmonger", "getcert", "dbus-send"):
        find_tool(tool)
    proc = _run([find_tool("dbus-run-session"), "--", "bash", "-c", _CM_SESSION_SCRIPT],
                cwd=workdir, env=env, timeout=timeout + 30, check=False)
    listing = _text(proc.stdout)
    if "status: MONITORING" not in listing or not cert.exists():
        raise PeerError(f"certmonger (session mode) did not get a certificate (exit {proc.returncode})\n"
                        f"{listing}\n{_text(proc.stderr)}\n{_tail(workdir / 'certmonger.log')}")
    return cert


def _tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return f"--- last lines of {path}\n" + "\n".join(text[-lines:])


# --------------------------------------------------------------------------- micromdm scepserver

def stop_process(proc: subprocess.Popen, grace: float = 5) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds: only this process, by its own pid."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_micromdm_scepserver(workdir: Path | str, port: int, challenge: str,
                              key_size: int = 2048, allow_renew_days: int = 0,
                              timeout: float = 15) -> subprocess.Popen:
    """Start micromdm scepserver 2.1.0 with an RSA CA of ``key_size`` bits; wait for GetCACaps.

    The CA is made once per workdir with ``scepserver ca -init`` (depot: workdir/depot; its
    ca.pem is also ``proc.ca_pem``). ``-allowrenew 0`` lets it issue again for a subject it
    already issued to (the default, 14, refuses that until 14 days before expiry).
    The returned Popen has ``.url`` (http://127.0.0.1:PORT/scep), ``.ca_pem`` and ``.log``;
    stop it with ``stop_process(proc)``. Note: scepserver has no bind-address option, it
    listens on all interfaces (":PORT"); tests only ever connect to 127.0.0.1.
    """
    workdir = Path(workdir).resolve()  # peers run with cwd=workdir
    workdir.mkdir(parents=True, exist_ok=True)
    server = find_tool("scepserver")
    depot = workdir / "depot"
    if not (depot / "ca.pem").exists():
        _run([server, "ca", "-init", "-depot", str(depot), "-keySize", str(key_size),
              "-organization", "pqscep-test", "-organizational_unit", "micromdm test CA"],
             cwd=workdir, timeout=60)
    log = workdir / "scepserver.log"
    with open(log, "ab") as logf:
        proc = subprocess.Popen([server, "-depot", str(depot), "-port", str(port), "-challenge",
                                 challenge, "-allowrenew", str(allow_renew_days), "-debug"],
                                cwd=workdir, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT)
    proc.url = f"http://127.0.0.1:{port}/scep"
    proc.ca_pem = depot / "ca.pem"
    proc.log = log
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{proc.url}?operation=GetCACaps", timeout=2) as r:
                if r.status == 200:
                    return proc
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise PeerError(f"scepserver did not answer GetCACaps on port {port}\n{_tail(log)}")
        time.sleep(0.1)
