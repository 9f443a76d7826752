class ModuleDocFragment(object):
    # The storage option shared by modules that write or read backups.
    DOCUMENTATION = r"""
options:
  storage:
    description:
      - Where backups are stored.
      - 'Layout: C(<prefix>/<job>/<YYYY>/<MM>/<DD>/<job>-<YYYYmmddTHHMMSSZ>.<ext>) with
        C(<job>-<YYYYmmddTHHMMSSZ>.manifest.json) beside it; manual backups under C(<job>/manual/).'
      - Options of one storage type given with another type are refused.
    type: dict
    required: true
    suboptions:
      type:
        description:
          - C(local) is a directory, C(s3) any S3-compatible object storage (AWS S3, MinIO,
            Backblaze B2, Cloudflare R2, Wasabi, GCS interoperability), C(sftp) an SSH server.
        type: str
        default: local
        choices: [local, s3, sftp]
      path:
        description:
          - O(storage.type=local), absolute path of the backup directory, created when missing.
          - O(storage.type=sftp), directory on the server, absolute or relative to the login
            directory; created when missing.
        type: str
      prefix:
        description:
          - Folder inside the storage that this job's backups go under, such as C(prod/eu).
          - Parts are letters, digits, C(.), C(_) or C(-); C(..) is refused.
        type: str
        default: ''
      retries:
        description:
          - How often a request that failed for a transient reason (connection reset, timeout,
            HTTP 5xx, throttling) is tried again, with exponential backoff and jitter.
          - For S3 a failed part is sent again, not the whole upload. Permanent errors (access
            denied, no such bucket, authentication) fail at once.
        type: int
        default: 3
      timeout:
        description: Seconds to wait when connecting and for each network read.
        type: int
        default: 60
      bucket:
        description: S3 bucket name.
        type: str
      region:
        description: S3 region; the SDK's default chain decides when omitted.
        type: str
      endpoint_url:
        description:
          - URL of an S3-compatible service, such as C(https://s3.eu-central-003.backblazeb2.com)
            or C(http://minio.internal:9000); AWS when omitted.
        type: str
      addressing_style:
        description:
          - C(path) puts the bucket in the URL path (MinIO and most self-hosted services),
            C(virtual) in the host name. C(auto) lets the SDK decide.
          - Defaults to C(path) when O(storage.endpoint_url) is set, C(auto) otherwise.
        type: str
        choices: [auto, path, virtual]
      access_key:
        description: S3 access key ID; with O(storage.secret_key). The default credential chain otherwise.
        type: str
      secret_key:
        description: S3 secret access key.
        type: str
      session_token:
        description: Session token of temporary credentials.
        type: str
      profile:
        description: Profile of the AWS shared configuration files to take credentials from.
        type: str
      storage_class:
        description: S3 storage class of stored objects, such as C(STANDARD_IA) or C(GLACIER_IR).
        type: str
      sse:
        description: Server-side encryption of stored objects.
        type: str
        choices: [AES256, 'aws:kms']
      kms_key_id:
        description: KMS key for O(storage.sse=aws:kms); the account's default key when omitted.
        type: str
      object_lock:
        description:
          - Object Lock retention for every object written; the bucket must have Object Lock enabled.
          - Retained objects cannot be deleted before the retention ends, also not by prune.
        type: dict
        suboptions:
          mode:
            description: C(GOVERNANCE) can be lifted by privileged users; C(COMPLIANCE) by no one.
            type: str
            required: true
            choices: [GOVERNANCE, COMPLIANCE]
          retain_days:
            description: Days from the upload until the objects may be deleted.
            type: int
            required: true
      tags:
        description: S3 object tags for stored objects (for lifecycle rules and cost reports).
        type: dict
      validate_certs:
        description: Verify the TLS certificate of the endpoint. Defaults to C(true).
        type: bool
      ca_bundle:
        description: CA bundle file to verify the endpoint's certificate with.
        type: path
      part_size:
        description:
          - Size in MiB of the first multipart upload parts (8 to 4096). Defaults to C(16).
          - A stream's length is unknown in advance and S3 allows 10,000 parts, so the part size
            doubles every 1,000 parts after the first 1,000, which lets one stream reach the 5 TiB
            object limit from the default.
        type: int
      max_concurrency:
        description:
          - Parts uploaded at the same time (1 to 64). Defaults to C(4).
          - Memory in use is about O(storage.max_concurrency) + 1 times the current part size.
        type: int
      checksum:
        description:
          - C(sha256) sends an explicit SHA-256 checksum with every object and part, checked by the
            service. C(none) sends none (for services that reject checksum headers).
          - Defaults to C(sha256).
        type: str
        choices: [sha256, none]
      request_checksum_calculation:
        description:
          - botocore's C(request_checksum_calculation). C(when_supported) adds the SDK's default
            CRC checksums, which Backblaze B2, Cloudflare R2 and some MinIO versions reject.
          - Defaults to C(when_required).
        type: str
        choices: [when_required, when_supported]
      host:
        description: SFTP server host name or address.
        type: str
      port:
        description: SFTP server port. Defaults to C(22).
        type: int
      user:
        description: SFTP login user. Defaults to the user running the module.
        type: str
      password:
        description: SFTP password; a key (O(storage.private_key)) is better.
        type: str
      private_key:
        description: Private key file for SFTP (ed25519, ECDSA or RSA, OpenSSH or PEM format).
        type: path
      private_key_passphrase:
        description: Passphrase of O(storage.private_key).
        type: str
      known_hosts:
        description: known_hosts file to check the SFTP server's host key against. Defaults to C(~/.ssh/known_hosts).
        type: path
      host_key:
        description:
          - The SFTP server's public host key, as in a known_hosts line without the host names
            (C(ssh-ed25519 AAAA...)); checked instead of O(storage.known_hosts).
        type: str
      host_key_checking:
        description:
          - Refuse an SFTP server whose host key is unknown or different. Defaults to C(true).
          - Turning it off lets anyone on the network path receive the backups.
        type: bool
"""
