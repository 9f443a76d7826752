"""Argument specs shared by the modules; documented once in doc_fragments/{source,storage,compression}.py."""

from ansible_collections.songmetrix.backup.plugins.module_utils.compression import ALGORITHMS
from ansible_collections.songmetrix.backup.plugins.module_utils.retention import POLICY_KEYS
from ansible_collections.songmetrix.backup.plugins.module_utils.sources import ENGINES

SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

SOURCE_OPTIONS = dict(
    engine=dict(type="str", required=True, choices=list(ENGINES)),
    host=dict(type="str"),
    port=dict(type="int"),
    user=dict(type="str"),
    password=dict(type="str", no_log=True),
    database=dict(type="str"),
    ssl_mode=dict(type="str", choices=SSL_MODES),
    connect_timeout=dict(type="int"),
    path=dict(type="path"),
    include=dict(type="list", elements="str"),
    exclude=dict(type="list", elements="str"),
    include_schemas=dict(type="list", elements="str"),
    exclude_schemas=dict(type="list", elements="str"),
    format=dict(type="str", choices=["custom", "plain", "directory"]),
    jobs=dict(type="int"),
    executable=dict(type="path"),
    mongodb=dict(
        type="dict",
        options=dict(
            uri=dict(type="str", no_log=True),
            auth_database=dict(type="str"),
            oplog=dict(type="bool"),
            read_preference=dict(
                type="str", choices=["primary", "primaryPreferred", "secondary", "secondaryPreferred", "nearest"]
            ),
        ),
    ),
    # SQL Server (engine mssql): documented in doc_fragments/source.py
    mssql=dict(
        type="dict",
        options=dict(
            mode=dict(type="str", default="native", choices=["native", "url"]),
            server_dir=dict(type="str"),
            local_dir=dict(type="path"),
            remove_bak=dict(type="bool", default=True),
            copy_only=dict(type="bool", default=True),
            compression=dict(type="bool", default=True),
            checksum=dict(type="bool", default=True),
            init=dict(type="bool", default=True),
            format=dict(type="bool", default=True),
            verify=dict(type="bool", default=True),
            stats=dict(type="int"),
            stripes=dict(type="int", default=1),
            max_transfer_size=dict(type="int", default=20971520),
            s3_endpoint=dict(type="str"),
            credential=dict(type="str", no_log=False),
            encrypt=dict(type="str", choices=["strict", "mandatory", "optional"]),
            trust_server_certificate=dict(type="bool", default=False),
            flavour=dict(type="str", default="auto", choices=["auto", "odbc", "go"]),
        ),
    ),
)

SOURCE_OPTIONS["supabase"] = dict(
    # Supabase (engine supabase): documented in doc_fragments/source.py
    type="dict",
    options=dict(
        connection_string=dict(type="str", no_log=True),
        roles=dict(type="bool", default=True),
        managed_schemas=dict(type="bool", default=True),
        managed_data=dict(type="bool", default=True),
        require_attachments=dict(type="bool", default=False),
        storage_buckets=dict(type="list", elements="str"),
        storage_endpoint=dict(type="str"),
        storage_region=dict(type="str"),
        storage_access_key=dict(type="str", no_log=True),
        storage_secret_key=dict(type="str", no_log=True),
    ),
)

# SQL Server restore target options (target.mssql): documented in modules/restore.py
MSSQL_TARGET_OPTIONS = dict(
    mode=dict(type="str", choices=["native", "url"]),
    server_dir=dict(type="str"),
    local_dir=dict(type="path"),
    move=dict(type="raw"),
    data_dir=dict(type="str"),
    log_dir=dict(type="str"),
    recovery=dict(type="bool", default=True),
    checksum=dict(type="bool", default=True),
    stats=dict(type="int"),
    s3_endpoint=dict(type="str"),
    credential=dict(type="str", no_log=False),
    encrypt=dict(type="str", choices=["strict", "mandatory", "optional"]),
    trust_server_certificate=dict(type="bool", default=False),
    flavour=dict(type="str", default="auto", choices=["auto", "odbc", "go"]),
)

# Where the restore module loads a backup: the connection options of SOURCE_OPTIONS, defined once.
TARGET_OPTIONS = dict(
    (name, SOURCE_OPTIONS[name])
    for name in ("engine", "host", "port", "user", "password", "database", "ssl_mode", "connect_timeout", "path",
                 "executable")
)
TARGET_OPTIONS["mongodb"] = dict(
    type="dict",
    options=dict(
        uri=dict(type="str", no_log=True),
        auth_database=dict(type="str"),
        oplog_replay=dict(type="bool"),
    ),
)
TARGET_OPTIONS["mssql"] = dict(type="dict", options=MSSQL_TARGET_OPTIONS)
# Supabase restore target options (target.supabase): documented in modules/restore.py
TARGET_OPTIONS["supabase"] = dict(
    type="dict",
    options=dict(
        connection_string=dict(type="str", no_log=True),
        roles=dict(type="bool", default=False),
        managed_schema=dict(type="bool", default=False),
        managed_data=dict(type="bool", default=False),
    ),
)


def target_spec():
    return dict(type="dict", required=True, options=TARGET_OPTIONS)


STORAGE_TYPES = ["local", "s3", "sftp"]

# Options per storage type. Type-specific options have no spec default, so that storage.py can
# refuse an option given for the wrong type; their defaults are applied there (and documented).
STORAGE_OPTIONS = dict(
    type=dict(type="str", default="local", choices=STORAGE_TYPES),
    path=dict(type="str"),
    prefix=dict(type="str", default=""),
    retries=dict(type="int", default=3),
    timeout=dict(type="int", default=60),
    # s3
    bucket=dict(type="str"),
    region=dict(type="str"),
    endpoint_url=dict(type="str"),
    addressing_style=dict(type="str", choices=["auto", "path", "virtual"]),
    access_key=dict(type="str", no_log=True),
    secret_key=dict(type="str", no_log=True),
    session_token=dict(type="str", no_log=True),
    profile=dict(type="str"),
    storage_class=dict(type="str"),
    sse=dict(type="str", choices=["AES256", "aws:kms"]),
    kms_key_id=dict(type="str", no_log=False),
    object_lock=dict(
        type="dict",
        options=dict(
            mode=dict(type="str", required=True, choices=["GOVERNANCE", "COMPLIANCE"]),
            retain_days=dict(type="int", required=True),
        ),
    ),
    tags=dict(type="dict"),
    validate_certs=dict(type="bool"),
    ca_bundle=dict(type="path"),
    part_size=dict(type="int"),
    max_concurrency=dict(type="int"),
    checksum=dict(type="str", choices=["sha256", "none"]),
    request_checksum_calculation=dict(type="str", choices=["when_required", "when_supported"]),
    # sftp
    host=dict(type="str"),
    port=dict(type="int"),
    user=dict(type="str"),
    password=dict(type="str", no_log=True),
    private_key=dict(type="path"),
    private_key_passphrase=dict(type="str", no_log=True),
    known_hosts=dict(type="path"),
    host_key=dict(type="str", no_log=False),
    host_key_checking=dict(type="bool"),
)

STORAGE_REQUIRED_IF = [
    ("type", "local", ["path"]),
    ("type", "s3", ["bucket"]),
    ("type", "sftp", ["host", "path"]),
]


def source_spec():
    return dict(type="dict", required=True, options=SOURCE_OPTIONS)


def storage_spec():
    return dict(type="dict", required=True, options=STORAGE_OPTIONS, required_if=STORAGE_REQUIRED_IF)


def compression_specs():
    return dict(
        compression=dict(type="str", default="zstd", choices=list(ALGORITHMS)),
        compression_level=dict(type="int"),
        compression_threads=dict(type="int", default=0),
        max_chunk_size=dict(type="str"),
    )


# The planner's rules: counts (keep_last .. keep_yearly) are numbers, keep_within* durations.
RETENTION_OPTIONS = {key: dict(type="str" if key.startswith("keep_within") else "int") for key in POLICY_KEYS}


def retention_spec():
    return dict(type="dict", required=True, options=RETENTION_OPTIONS)


ENCRYPTION_OPTIONS = dict(
    method=dict(type="str", required=True, choices=["age", "gpg"], aliases=["type"]),
    recipients=dict(type="list", elements="str"),
    recipient_files=dict(type="list", elements="path"),
    passphrase=dict(type="str", no_log=True),
    cipher=dict(type="str"),
)

DECRYPTION_OPTIONS = dict(
    identity=dict(type="str", no_log=True),
    identity_files=dict(type="list", elements="path"),
    passphrase=dict(type="str", no_log=True),
)


LOCK_OPTIONS = dict(
    enabled=dict(type="bool", default=True),
    dir=dict(type="path"),  # default: job_lock.default_lock_dir(), per user
    wait=dict(type="int", default=0),
    stale_after=dict(type="str", default="12h"),
)


# Documented in doc_fragments/signing.py.
SIGNING_OPTIONS = dict(
    key=dict(type="str", required=True, no_log=True),
    verify_keys=dict(type="list", elements="str", no_log=True),
)


def signing_specs():
    return dict(signing=dict(type="dict", options=SIGNING_OPTIONS))


def lock_specs():
    return dict(lock=dict(type="dict", options=LOCK_OPTIONS))


def encryption_specs():
    return dict(encryption=dict(type="dict", options=ENCRYPTION_OPTIONS))


def no_log_option_names(spec):
    """The names of the options of an argument spec (nested options too) that are declared no_log=True."""
    names = set()
    for name, option in (spec or {}).items():
        if isinstance(option, dict):
            if option.get("no_log") is True:
                names.add(name)
            names.update(no_log_option_names(option.get("options")))
    return names


def collection_no_log_option_names():
    """Every no_log option name of the specs in this file: in its dicts of options and in what its ``*_spec()``
    and ``*_specs()`` functions return. Derived when called (after the whole file is loaded), so an option added
    here with no_log=True is a secret to the redaction (module_utils/redact.py, plugin_utils/redact.py) at once."""
    names = set()
    for name, value in list(globals().items()):
        if isinstance(value, dict):
            names.update(no_log_option_names(value))
        elif name.endswith(("_spec", "_specs")) and callable(value):
            built = value()
            # source_spec() is one option (with its "options"), compression_specs() a spec of several.
            names.update(no_log_option_names({name: built} if isinstance(built.get("type"), str) else built))
    return frozenset(names)
