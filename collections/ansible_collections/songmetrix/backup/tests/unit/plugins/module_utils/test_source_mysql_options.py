from ansible_collections.songmetrix.backup.plugins.module_utils.source_mysql import defaults_file, option_value


def test_option_value_escapes_quotes_and_backslashes():
    assert option_value('p"a#s\\w\'d') == '"p\\"a#s\\\\w\'d"'


def test_defaults_file_mariadb_ssl_and_credentials():
    text = defaults_file(
        {"host": "db", "port": 3307, "user": "bk", "password": "s3cr#t", "ssl_mode": "verify-full",
         "connect_timeout": 5},
        "mariadb",
    )
    assert text.splitlines() == [
        "[client]", 'host="db"', 'port="3307"', 'user="bk"', 'password="s3cr#t"',
        "ssl", "ssl-verify-server-cert", "[mysql]", "connect-timeout=5",
    ]


def test_defaults_file_mysql_ssl_mode():
    assert "ssl-mode=REQUIRED" in defaults_file({"ssl_mode": "require"}, "mysql")
