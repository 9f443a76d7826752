#!/usr/bin/env python3
"""Create the demo SQLite database (a few tables, a few hundred rows) at argv[1].

Demo only: used by roles/backup_run/tasks/demo_data.yml when the file is missing.
Deterministic content, written to a temporary name and renamed into place.
"""

import os
import random
import sqlite3
import sys


def build(path):
    rnd = random.Random(20261123)
    tmp = path + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    con = sqlite3.connect(tmp)
    with con:
        con.executescript(
            """
            CREATE TABLE artists (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT);
            CREATE TABLE songs (
                id INTEGER PRIMARY KEY,
                artist_id INTEGER NOT NULL REFERENCES artists(id),
                title TEXT NOT NULL,
                duration_s INTEGER NOT NULL,
                released TEXT NOT NULL
            );
            CREATE TABLE plays (
                id INTEGER PRIMARY KEY,
                song_id INTEGER NOT NULL REFERENCES songs(id),
                station TEXT NOT NULL,
                played_at TEXT NOT NULL
            );
            CREATE INDEX plays_song ON plays(song_id);
            """
        )
        countries = ["BR", "DE", "FR", "GB", "JP", "NL", "PT", "US"]
        words = ["blue", "night", "river", "summer", "echo", "gold", "rain", "city", "heart", "road"]
        con.executemany(
            "INSERT INTO artists (id, name, country) VALUES (?, ?, ?)",
            [(i, f"Artist {i:03d}", rnd.choice(countries)) for i in range(1, 51)],
        )
        con.executemany(
            "INSERT INTO songs (id, artist_id, title, duration_s, released) VALUES (?, ?, ?, ?, ?)",
            [
                (
                    i,
                    rnd.randint(1, 50),
                    " ".join(rnd.choice(words) for _ in range(3)).title(),
                    rnd.randint(120, 420),
                    f"{rnd.randint(1990, 2026):04d}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}",
                )
                for i in range(1, 301)
            ],
        )
        con.executemany(
            "INSERT INTO plays (song_id, station, played_at) VALUES (?, ?, ?)",
            [
                (
                    rnd.randint(1, 300),
                    "Radio " + rnd.choice(["Alpha", "Beta", "Gamma", "Delta"]),
                    f"2026-11-{rnd.randint(1, 22):02d}T{rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}:00Z",
                )
                for _ in range(800)
            ],
        )
    con.close()
    os.rename(tmp, path)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: demo_sqlite.py DATABASE")
    path = sys.argv[1]
    if os.path.exists(path):
        print(f"exists: {path}")
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    build(path)
    print(f"created: {path}")


if __name__ == "__main__":
    main()
