"""Client-side encryption as pipeline transforms: the stock age and gpg tools, standard formats.

An encrypted artifact is a plain age file or OpenPGP message, so `age -d` or `gpg --decrypt` opens
it without this collection. Secrets (a gpg passphrase, an age identity or a gpg secret key given
as text) reach the tools through an inherited pipe read as /dev/fd/N or through stdin, never argv
or a file. gpg runs with a throw-away home directory, so the user's keyring is neither read nor
changed; its agent is stopped and the directory removed when the stream is done.
"""

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile

from ansible_collections.songmetrix.backup.plugins.module_utils.compression import SECRET_FD, Transform
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.pipeline import Tap
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import child_env, find_tool, last_lines

METHODS = ("age", "gpg")
EXTENSIONS = {"age": "age", "gpg": "gpg"}
GPG_CIPHERS = ("AES256", "AES192", "AES", "TWOFISH", "CAMELLIA256")


PLAINTEXT = "plaintext"  # the pipeline Tap between compression and encryption


def encryption_stages(encryptor):
    """Stages after compression: the plaintext checksum, then the encryptor (none without encryption)."""
    return [Tap(PLAINTEXT), encryptor.transform] if encryptor else []


def decryption_stages(decryptor):
    """Stages before decompression: the decryptor, then the plaintext checksum (none for a plain backup)."""
    return [decryptor.transform, Tap(PLAINTEXT)] if decryptor else []


def manifest_info(info, stream_result):
    """The manifest's ``encryption``: method and recipients, plus size and SHA-256 of the plaintext (the
    compressed stream that went into the encryptor), which decrypting the artifact must give back."""
    if not info:
        return info
    info = dict(info)
    taps = getattr(stream_result, "taps", None) or {}
    if PLAINTEXT in taps:
        info["plaintext_size"], info["plaintext_sha256"] = taps[PLAINTEXT]
    return info


def plaintext_problem(record, stream_result, what):
    """A message when the decrypted stream is not the plaintext the manifest recorded, else None."""
    expected = (record.get("encryption") or {}).get("plaintext_sha256")
    if not expected or PLAINTEXT not in stream_result.taps:
        return None  # manifests from before 0.5.0 do not record it
    size, sha256 = stream_result.taps[PLAINTEXT]
    if sha256 != expected:
        return ("%s decrypted to %d bytes with SHA-256 %s, but the manifest records plaintext_sha256 %s"
                % (what, size, sha256, expected))
    return None


def extension(info):
    return EXTENSIONS[info["method"]] if info else None


def _read_lines(path, what):
    try:
        with open(path) as handle:
            return [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError("%s %s cannot be read: %s" % (what, path, getattr(exc, "strerror", None) or exc))


def age_fingerprint(recipient):
    """What the manifest records of an age recipient: an age1 key is its own fingerprint; an SSH
    public key is recorded as its SHA256 fingerprint (as ssh-keygen -l prints it)."""
    if recipient.startswith("age1"):
        return recipient
    parts = recipient.split()
    if len(parts) >= 2 and parts[0].startswith(("ssh-", "ecdsa-")):
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except ValueError:
            raise ValidationError("encryption recipient %r is not a valid SSH public key" % parts[0])
        digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
        return "%s SHA256:%s" % (parts[0], digest)
    raise ValidationError("age recipient %r is neither an age1... public key nor an SSH public key"
                          % (recipient[:20] + ("..." if len(recipient) > 20 else "")))


def check_terminal_secret(secret, what):
    """A secret typed on a terminal ends at the first line break and cannot hold control characters."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in secret):
        raise ValidationError("%s cannot contain line breaks or control characters with age" % what)
    if len(secret.encode("utf-8")) > 1000:
        raise ValidationError("%s is too long for age (at most 1000 bytes)" % what)


class _GpgHome(object):
    """A throw-away GNUPGHOME (short path: gpg-agent's socket must fit in 108 bytes)."""

    def __init__(self):
        self.gpg = find_tool("gpg", package_hint="gnupg")
        self.path = tempfile.mkdtemp(prefix="sm-gpg-")
        os.chmod(self.path, 0o700)

    def run(self, args, what, input_data=None):
        argv = [self.gpg, "--homedir", self.path, "--batch", "--no-tty", "--quiet"] + args
        try:
            proc = subprocess.run(argv, input=input_data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=child_env({}), timeout=120, check=False)  # status read below
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackupError("%s failed: %s" % (what, exc))
        if proc.returncode != 0:
            raise BackupError("%s failed: %s" % (what, last_lines(proc.stderr.decode("utf-8", errors="replace"))))
        return proc.stdout.decode("utf-8", errors="replace")

    def close(self):
        if self.path is None:
            return
        gpgconf = os.path.join(os.path.dirname(self.gpg), "gpgconf")
        if os.access(gpgconf, os.X_OK):
            try:
                subprocess.run([gpgconf, "--homedir", self.path, "--kill", "gpg-agent"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=30, check=False)  # best effort: no agent is fine
            except (OSError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.path, ignore_errors=True)
        self.path = None


def _gpg_fingerprints(home, key_file):
    out = home.run(["--with-colons", "--show-keys", key_file], "reading the gpg key %s" % key_file)
    fingerprints, expect = [], False
    for line in out.splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            expect = True
        elif fields[0] == "fpr" and expect:
            fingerprints.append(fields[9])
            expect = False
    if not fingerprints:
        raise ValidationError("%s holds no OpenPGP public key" % key_file)
    return fingerprints


class Encryptor(object):
    """The encrypting Transform of one backup, and what the manifest says about it."""

    def __init__(self, options):
        self.options = options
        self.method = options.get("method")
        self._home = None
        if self.method == "age":
            self.transform, self.info = self._age()
        elif self.method == "gpg":
            self.transform, self.info = self._gpg()
        else:
            raise ValidationError("encryption.method must be one of %s, not %r" % (", ".join(METHODS), self.method))

    def _age(self):
        o = self.options
        if o.get("cipher"):
            raise ValidationError("encryption.cipher is for gpg; age has one cipher (ChaCha20-Poly1305)")
        recipients = list(o.get("recipients") or [])
        files = list(o.get("recipient_files") or [])
        if o.get("passphrase"):
            if recipients or files:
                raise ValidationError("age encrypts to recipients or with a passphrase, not both: drop "
                                      "encryption.passphrase or encryption.recipients/recipient_files")
            return self._age_passphrase(o["passphrase"])
        if not recipients and not files:
            raise ValidationError("age encryption needs encryption.recipients, encryption.recipient_files "
                                  "or encryption.passphrase")
        fingerprints = [age_fingerprint(r.strip()) for r in recipients]
        for path in files:
            lines = _read_lines(path, "encryption.recipient_files entry")
            if not lines:
                raise ValidationError("encryption.recipient_files entry %s names no recipient" % path)
            fingerprints += [age_fingerprint(line) for line in lines]
        argv = [find_tool("age", package_hint="age"), "--encrypt"]
        for recipient in recipients:
            argv += ["--recipient", recipient.strip()]
        for path in files:
            argv += ["--recipients-file", path]
        info = {"method": "age", "recipients": fingerprints}
        return Transform("age", argv, dict(info)), info

    @staticmethod
    def _age_passphrase(passphrase):
        # age reads a passphrase only from its terminal: it gets a private one (procs.PrivateTerminal)
        # and answers the "Enter" and "Confirm" prompts from it.
        check_terminal_secret(passphrase, "encryption.passphrase")
        argv = [find_tool("age", package_hint="age"), "--encrypt", "--passphrase"]
        info = {"method": "age", "mode": "passphrase"}
        return Transform("age", argv, dict(info), secret=passphrase, secret_prompts=2), info

    def _gpg(self):
        o = self.options
        if o.get("recipients"):
            raise ValidationError("gpg encryption takes public keys as files (encryption.recipient_files), so "
                                  "no keyring is needed; encryption.recipients is for age")
        files = list(o.get("recipient_files") or [])
        if bool(files) == bool(o.get("passphrase")):
            raise ValidationError("gpg encryption needs exactly one of encryption.passphrase (symmetric) or "
                                  "encryption.recipient_files (public keys)")
        cipher = (o.get("cipher") or "AES256").upper()
        if cipher not in GPG_CIPHERS:
            raise ValidationError("encryption.cipher must be one of %s, not %r" % (", ".join(GPG_CIPHERS), cipher))
        self._home = _GpgHome()
        try:
            argv = [self._home.gpg, "--homedir", self._home.path, "--batch", "--no-tty", "--quiet",
                    "--compress-algo", "none", "--cipher-algo", cipher, "--output", "-"]
            if files:
                fingerprints = []
                for path in files:
                    fingerprints += _gpg_fingerprints(self._home, path)
                    argv += ["--recipient-file", path]
                argv += ["--trust-model", "always", "--encrypt"]
                info = {"method": "gpg", "mode": "public-key", "cipher": cipher, "recipients": fingerprints}
            else:
                argv += ["--pinentry-mode", "loopback", "--no-symkey-cache", "--passphrase-fd", SECRET_FD,
                         "--symmetric"]
                info = {"method": "gpg", "mode": "symmetric", "cipher": cipher}
        except BaseException:
            self.close()
            raise
        return Transform("gpg", argv, dict(info), secret=o.get("passphrase")), info

    def close(self):
        if self._home is not None:
            self._home.close()
            self._home = None


class Decryptor(object):
    """The decrypting Transform for a backup whose manifest says how it was encrypted."""

    def __init__(self, info, options, what):
        self.info = info
        self._home = None
        options = options or {}
        method = info.get("method") if isinstance(info, dict) else None
        if method == "age":
            self.transform = self._age(info, options, what)
        elif method == "gpg":
            self.transform = self._gpg(info, options, what)
        else:
            raise BackupError("%s is encrypted with %r, which this version cannot decrypt" % (what, method))

    @staticmethod
    def _age(info, options, what):
        if info.get("mode") == "passphrase":
            passphrase = options.get("passphrase")
            if not passphrase:
                raise ValidationError("%s is encrypted with an age passphrase; give decryption.passphrase" % what)
            check_terminal_secret(passphrase, "decryption.passphrase")
            argv = [find_tool("age", package_hint="age"), "--decrypt"]
            return Transform("age -d", argv, {"method": "age"}, secret=passphrase, secret_prompts=1)
        identity, files = options.get("identity"), list(options.get("identity_files") or [])
        if not identity and not files:
            raise ValidationError("%s is encrypted with age to %s: give decryption.identity or "
                                  "decryption.identity_files" % (what, ", ".join(info.get("recipients") or ["?"])))
        argv = [find_tool("age", package_hint="age"), "--decrypt"]
        for path in files:
            argv += ["--identity", path]
        if identity:
            argv += ["--identity", "/dev/fd/" + SECRET_FD]
        return Transform("age -d", argv, {"method": "age"}, secret=identity)

    def _gpg(self, info, options, what):
        identity, files = options.get("identity"), list(options.get("identity_files") or [])
        passphrase = options.get("passphrase")
        if info.get("mode") == "symmetric" and not passphrase:
            raise ValidationError("%s is encrypted with a gpg passphrase; give decryption.passphrase" % what)
        if info.get("mode") != "symmetric" and not identity and not files:
            raise ValidationError("%s is encrypted with gpg to %s: give decryption.identity or "
                                  "decryption.identity_files (the secret keys)"
                                  % (what, ", ".join(info.get("recipients") or ["?"])))
        self._home = _GpgHome()
        try:
            for path in files:
                self._home.run(["--import", path], "importing the gpg secret key %s" % path)
            if identity:
                self._home.run(["--import"], "importing the gpg secret key of decryption.identity",
                               input_data=identity.encode("utf-8"))
        except BaseException:
            self.close()
            raise
        argv = [self._home.gpg, "--homedir", self._home.path, "--batch", "--no-tty", "--quiet", "--decrypt",
                "--output", "-"]
        if passphrase:
            argv[-3:-3] = ["--pinentry-mode", "loopback", "--no-symkey-cache", "--passphrase-fd", SECRET_FD]
        return Transform("gpg --decrypt", argv, {"method": "gpg"}, secret=passphrase)

    def close(self):
        if self._home is not None:
            self._home.close()
            self._home = None


def build_encryptor(options):
    """An Encryptor for the ``encryption`` option, or None when it is not set."""
    if not options or not options.get("method"):
        if options and any(options.get(k) for k in ("recipients", "recipient_files", "passphrase")):
            raise ValidationError("encryption needs a method (age or gpg)")
        return None
    return Encryptor(options)
