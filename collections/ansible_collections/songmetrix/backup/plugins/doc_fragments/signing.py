class ModuleDocFragment(object):
    # Signed manifests, lock objects and last-attempt records (module_utils/signing.py).
    DOCUMENTATION = r"""
options:
  signing:
    description:
      - The job's signing key. Every manifest, lock object and last-attempt record a run writes is signed
        with it (HMAC-SHA256 over the record's exact bytes, with the key's id); what is read back must be
        signed by it, so someone who can write to the storage but has no key cannot plant a backup, steer
        prune or block the job.
      - With a key, M(songmetrix.backup.restore) restores only backups the key signed (C(latest) and
        C(before) pass over the others, by name), M(songmetrix.backup.verify) fails them,
        M(songmetrix.backup.prune) does not count them, M(songmetrix.backup.backup_info) flags them in
        RV(songmetrix.backup.backup_info#module:unauthenticated), the spool keeps them, and a lock object
        the key did not sign is taken over. Without a key everything works as before, and verify and
        backup_info call every backup C(unauthenticated).
      - Keep it in Ansible Vault; give the same key to every host and module that handles the job. Results
        show only the key's id, 16 hex digits derived from the key.
      - With a key, prune and backup_info read every manifest they list (one small read each, in parallel
        on S3).
    type: dict
    suboptions:
      key:
        description:
          - The secret key, at least 32 bytes (C(openssl rand -base64 32) makes one).
        type: str
        required: true
      verify_keys:
        description:
          - Older keys that still check what they signed, while backups signed by them are kept
            (key rotation). Only O(signing.key) signs.
        type: list
        elements: str
"""
