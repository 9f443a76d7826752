class ModuleDocFragment(object):
    # Client-side encryption of the stream (dump, upload).
    DOCUMENTATION = r"""
options:
  encryption:
    description:
      - Encrypt the stream after compression, with the stock C(age) or C(gpg) tool. The artifact is a plain
        C(.age) file or OpenPGP message (C(.gpg)) that C(age -d) or C(gpg --decrypt) opens without this collection.
      - The manifest records the method and the recipients' fingerprints, never a key or a passphrase.
      - Keep the private keys (or the passphrase) somewhere that survives the loss of the backup host.
    type: dict
    suboptions:
      method:
        description:
          - C(age) encrypts to age or SSH public keys (O(encryption.recipients), O(encryption.recipient_files)),
            or with a passphrase (O(encryption.passphrase); C(age -p) format, scrypt).
          - C(gpg) encrypts with a passphrase (O(encryption.passphrase), symmetric) or to OpenPGP public keys
            read from files (O(encryption.recipient_files)), in a throw-away home directory (no keyring needed).
        type: str
        required: true
        choices: [age, gpg]
        aliases: [type]
      recipients:
        description:
          - For C(age), public keys (C(age1...)) or SSH public key lines (C(ssh-ed25519 ...), C(ssh-rsa ...)).
        type: list
        elements: str
      recipient_files:
        description:
          - For C(age), files of recipients, one per line (as C(age -R) reads them).
          - For C(gpg), files holding OpenPGP public keys (armored or binary), as C(gpg --recipient-file) reads them.
        type: list
        elements: path
      passphrase:
        description:
          - A symmetric passphrase, instead of recipients.
          - C(gpg) reads it from an inherited pipe. C(age) reads passphrases only from a terminal, so it gets a
            private pseudo-terminal with the passphrase typed into it. Never argv, the environment or a file.
          - For C(age), one line of at most 1000 bytes (no control characters).
        type: str
      cipher:
        description:
          - For C(gpg), the cipher (C(AES256), the default, C(AES192), C(AES), C(TWOFISH), C(CAMELLIA256)).
        type: str
"""

    # Decrypting an encrypted backup (restore, verify with deep).
    DECRYPTION = r"""
options:
  decryption:
    description:
      - The key (or passphrase) that opens an encrypted backup; the manifest says which method and
        recipients it was encrypted for. Ignored for an unencrypted backup, so a job can keep its key
        while backups from before it was encrypted are still restored.
      - Secrets reach C(age) and C(gpg) through an inherited pipe, stdin or (an age passphrase) a private
        pseudo-terminal, never argv or a file.
    type: dict
    suboptions:
      identity:
        description:
          - The private key as text; an age identity (C(AGE-SECRET-KEY-1...)) or an armored OpenPGP secret key.
        type: str
      identity_files:
        description:
          - Files holding private keys; age identity files (as C(age -i) reads them) or OpenPGP secret keys.
        type: list
        elements: path
      passphrase:
        description:
          - The passphrase of a backup encrypted with one (C(age) or C(gpg)), or the passphrase of the OpenPGP
            secret key.
        type: str
"""
