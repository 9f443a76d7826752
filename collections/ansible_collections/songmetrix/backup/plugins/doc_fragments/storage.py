class ModuleDocFragment(object):
    # The storage option shared by modules that write or read backups.
    DOCUMENTATION = r"""
options:
  storage:
    description:
      - Where backups are stored.
      - 'Layout: C(<path>/<prefix>/<job>/<YYYY>/<MM>/<DD>/<job>-<YYYYmmddTHHMMSSZ>.<ext>) with
        C(<job>-<YYYYmmddTHHMMSSZ>.manifest.json) beside it; manual backups under C(<job>/manual/).'
    type: dict
    required: true
    suboptions:
      type:
        description: Storage kind.
        type: str
        default: local
        choices: [local]
      path:
        description:
          - Absolute path of the backup directory (O(storage.type=local)); created when missing.
        type: path
      prefix:
        description:
          - Folder inside the storage that this job's backups go under, such as C(prod/eu).
          - Parts are letters, digits, C(.), C(_) or C(-); C(..) is refused.
        type: str
        default: ''
"""
