"""The redaction's secret option names are derived from the argument specs, never listed by hand."""

from ansible_collections.songmetrix.backup.plugins.module_utils import specs
from ansible_collections.songmetrix.backup.plugins.module_utils.redact import secret_values
from ansible_collections.songmetrix.backup.plugins.plugin_utils import redact as plugin_redact
from ansible_collections.songmetrix.backup.tests.unit.module_specs import module_argument_specs


def test_the_names_are_exactly_the_no_log_options_of_every_module():
    declared = set()
    for spec in module_argument_specs().values():
        declared |= specs.no_log_option_names(spec)
    assert plugin_redact.NO_LOG_OPTION_NAMES == declared
    # the ones issue 17 found missing from the old hand-written list
    assert {"connection_string", "headers", "storage_secret_key", "url", "uri"} <= declared


def test_the_modules_own_specs_are_read_from_their_source():
    shared = specs.collection_no_log_option_names()
    own = set()
    for spec in module_argument_specs().values():
        own |= specs.no_log_option_names(spec) - shared
    assert own == {"url", "headers"}  # notify's webhooks and healthchecks
    assert plugin_redact.module_no_log_option_names() - shared == own


def test_a_no_log_option_added_to_the_specs_is_a_secret_at_once(monkeypatch):
    # What the lead's signing option will do: a new spec function in specs.py with a no_log key.
    def signing_specs():
        return dict(signing=dict(type="dict", options=dict(key=dict(type="str", no_log=True),
                                                           hmac_secret_x=dict(type="str", no_log=True))))

    monkeypatch.setattr(specs, "signing_specs", signing_specs, raising=False)
    monkeypatch.setattr(specs, "WEBHOOK_X_OPTIONS", dict(bearer_x=dict(type="str", no_log=True)), raising=False)
    assert {"key", "hmac_secret_x", "bearer_x"} <= specs.collection_no_log_option_names()
    params = {"job": "j", "signing": {"hmac_secret_x": "s-1", "key_id": "k1"}, "hook": {"bearer_x": "b-1"}}
    assert sorted(secret_values(params)) == ["b-1", "s-1"]


def test_collect_secrets_takes_header_values_and_connection_strings():
    args = {
        "webhooks": [{"type": "json", "url": "https://hooks.example/T0/B1",
                      "headers": {"X-Signature": "sig-value-1", "Authorization": "Bearer tok-2", "X-Id": "r"}}],
        "source": {"engine": "supabase", "supabase": {"connection_string": "postgresql://u@h:6543/postgres"}},
        "uri_task": {"headers": {"X-Api": "api-3333"}},
    }
    assert plugin_redact.collect_secrets(args) == {
        "https://hooks.example/T0/B1", "sig-value-1", "Bearer tok-2", "postgresql://u@h:6543/postgres", "api-3333"}
