"""Where a backup lives in storage: <prefix>/<job>/[manual/]<YYYY>/<MM>/<DD>/<job>-<UTC stamp>.<ext>."""

MANIFEST_SUFFIX = ".manifest.json"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def backup_stem(prefix, job, kind, started_utc):
    """The key of a backup without extension; the artifact and its manifest share it."""
    parts = [prefix] if prefix else []
    parts.append(job)
    if kind == "manual":
        parts.append("manual")
    parts.append(started_utc.strftime("%Y/%m/%d"))
    parts.append("%s-%s" % (job, started_utc.strftime(STAMP_FORMAT)))
    return "/".join(parts)


def artifact_key(stem, extension):
    return "%s.%s" % (stem, extension)


def manifest_key(stem):
    return stem + MANIFEST_SUFFIX


def iso_utc(moment):
    """UTC ISO 8601 with a Z, seconds precision: what manifests carry."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
