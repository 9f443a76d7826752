"""Repository-level tests and their helpers (servers.py, modrun.py); see conftest.py."""
