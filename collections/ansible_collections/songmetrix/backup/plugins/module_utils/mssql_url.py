"""SQL Server BACKUP/RESTORE ... TO/FROM URL = 's3://...': URLs, stripe keys and the credential.

SQL Server 2022 and later write a backup straight into S3-compatible storage over HTTPS, path
style: s3://<endpoint>[:port]/<bucket>/<key>. The access key travels in a server credential
named after the bucket's URL (``s3://<endpoint>/<bucket>``), created or updated by the module;
its secret is only ever in the T-SQL given to sqlcmd through a 0600 file.
"""

import re
from urllib.parse import urlsplit

from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError

IDENTITY = "S3 Access Key"
MAX_STRIPES = 64
_REGION_RE = re.compile(r"^[a-z0-9-]{1,40}$")
_ENDPOINT_RE = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$")


class S3Location(object):
    """Where SQL Server writes: endpoint (host[:port]), bucket, region, and the credential."""

    def __init__(self, storage_params, opts):
        storage_params = storage_params or {}
        if storage_params.get("type") != "s3":
            raise ValidationError("source.mssql.mode url writes the backup straight into S3-compatible storage: "
                                  "it needs storage.type s3, not %s" % (storage_params.get("type") or "local"))
        if storage_params.get("session_token"):
            raise ValidationError("source.mssql.mode url: SQL Server cannot use temporary credentials "
                                  "(storage.session_token); give a long-lived storage.access_key and secret_key")
        self.access_key = storage_params.get("access_key")
        self.secret_key = storage_params.get("secret_key")
        if not self.access_key or not self.secret_key:
            raise ValidationError("source.mssql.mode url needs storage.access_key and storage.secret_key: SQL Server "
                                  "keeps them in a server credential (profiles and instance roles cannot be used)")
        if ":" in self.access_key:
            raise ValidationError("storage.access_key must not contain ':' (the credential's secret is key:secret)")
        for label, value in (("storage.access_key", self.access_key), ("storage.secret_key", self.secret_key)):
            if any(ch in value for ch in ("\x00", "\n", "\r")):
                raise ValidationError("%s must not contain NUL or line breaks" % label)
        self.bucket = storage_params["bucket"]
        self.region = storage_params.get("region") or None
        if self.region and not _REGION_RE.match(self.region):
            raise ValidationError("storage.region %r is not a region name" % self.region)
        self.endpoint = opts.get("s3_endpoint") or self._endpoint(storage_params)
        if not _ENDPOINT_RE.match(self.endpoint):
            raise ValidationError("source.mssql.s3_endpoint must be host or host:port, not %r" % self.endpoint)
        self.credential = opts.get("credential") or "s3://%s/%s" % (self.endpoint, self.bucket)
        self.warnings = []
        endpoint_url = storage_params.get("endpoint_url") or ""
        if endpoint_url.startswith("http://") and not opts.get("s3_endpoint"):
            self.warnings.append("storage.endpoint_url is plain HTTP, but SQL Server talks to S3 over HTTPS only: "
                                 "give source.mssql.s3_endpoint the HTTPS host:port SQL Server can reach")

    def _endpoint(self, storage_params):
        endpoint_url = storage_params.get("endpoint_url")
        if endpoint_url:
            parts = urlsplit(endpoint_url)
            if not parts.hostname:
                raise ValidationError("storage.endpoint_url %r names no host" % endpoint_url)
            return parts.netloc.rsplit("@", 1)[-1]
        if not self.region:
            raise ValidationError("source.mssql.mode url on AWS S3 needs storage.region (or source.mssql.s3_endpoint)")
        return "s3.%s.amazonaws.com" % self.region

    def secret(self):
        return "%s:%s" % (self.access_key, self.secret_key)

    def url(self, key):
        return "s3://%s/%s/%s" % (self.endpoint, self.bucket, key)

    def scrub(self, text):
        """``text`` without the secret key (SQL Server never echoes it, but be sure)."""
        for value in (self.secret_key, self.secret()):
            text = text.replace(value, "********")
        return text


def stripe_keys(artifact_key, stripes):
    """``<stem>.bak`` for one URL, ``<stem>.stripe1ofN.bak`` ... for N stripes."""
    if stripes == 1:
        return [artifact_key]
    stem = artifact_key[: -len(".bak")] if artifact_key.endswith(".bak") else artifact_key
    return ["%s.stripe%dof%d.bak" % (stem, index, stripes) for index in range(1, stripes + 1)]


def check_stripes(value):
    stripes = 1 if value is None else int(value)
    if not 1 <= stripes <= MAX_STRIPES:
        raise ValidationError("source.mssql.stripes must be between 1 and %d, not %d" % (MAX_STRIPES, stripes))
    return stripes
