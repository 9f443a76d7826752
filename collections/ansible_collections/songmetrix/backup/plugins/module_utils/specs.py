"""Argument specs shared by the modules; documented once in doc_fragments/{source,storage,compression}.py."""

from ansible_collections.songmetrix.backup.plugins.module_utils.compression import ALGORITHMS
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
)

STORAGE_OPTIONS = dict(
    type=dict(type="str", default="local", choices=["local"]),
    path=dict(type="path"),
    prefix=dict(type="str", default=""),
)

STORAGE_REQUIRED_IF = [("type", "local", ["path"])]


def source_spec():
    return dict(type="dict", required=True, options=SOURCE_OPTIONS)


def storage_spec():
    return dict(type="dict", required=True, options=STORAGE_OPTIONS, required_if=STORAGE_REQUIRED_IF)


def compression_specs():
    return dict(
        compression=dict(type="str", default="zstd", choices=list(ALGORITHMS)),
        compression_level=dict(type="int"),
        compression_threads=dict(type="int", default=0),
    )
