# Copyright l2span authors. Licensed under the Apache License 2.0.
"""A durable journal of brain calls to retry, in a SQLite file.

An entry names a resource (kind + Neutron id, plus what is needed to find
it in the brain once Neutron has forgotten it); retrying an entry makes the
brain match Neutron's *current* state of that resource, so entries are
idempotent and their order does not matter. One entry per resource: adding
again resets its backoff and keeps the newest extra data.
"""

import json
import sqlite3
import threading
import time

SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    kind       TEXT NOT NULL,
    res_id     TEXT NOT NULL,
    extra      TEXT NOT NULL DEFAULT '{}',
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_try   REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    PRIMARY KEY (kind, res_id)
)
"""


class Journal(object):

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()
        with self._db() as db:
            db.execute(SCHEMA)

    def _db(self):
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute('PRAGMA busy_timeout = 30000')
        return _Closing(db)

    def add(self, kind, res_id, extra=None, error=''):
        now = time.time()
        with self._lock, self._db() as db:
            db.execute(
                "INSERT INTO journal (kind, res_id, extra, next_try,"
                " last_error, created_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (kind, res_id) DO UPDATE SET"
                " extra = excluded.extra, next_try = excluded.next_try,"
                " last_error = excluded.last_error, attempts = 0",
                (kind, res_id, json.dumps(extra or {}), now, str(error)[:2000],
                 now))

    def due(self, now=None, limit=100):
        """Entries whose retry time has come, oldest first."""
        now = time.time() if now is None else now
        with self._lock, self._db() as db:
            rows = db.execute(
                "SELECT kind, res_id, extra, attempts FROM journal"
                " WHERE next_try <= ? ORDER BY created_at LIMIT ?",
                (now, limit)).fetchall()
        return [(k, r, json.loads(e), a) for k, r, e, a in rows]

    def done(self, kind, res_id):
        with self._lock, self._db() as db:
            db.execute("DELETE FROM journal WHERE kind = ? AND res_id = ?",
                       (kind, res_id))

    def failed(self, kind, res_id, error, base=2.0, cap=60.0):
        with self._lock, self._db() as db:
            row = db.execute(
                "SELECT attempts FROM journal WHERE kind = ? AND res_id = ?",
                (kind, res_id)).fetchone()
            if row is None:
                return
            attempts = row[0] + 1
            delay = min(cap, base * (2 ** min(attempts - 1, 10)))
            db.execute(
                "UPDATE journal SET attempts = ?, next_try = ?,"
                " last_error = ? WHERE kind = ? AND res_id = ?",
                (attempts, time.time() + delay, str(error)[:2000], kind,
                 res_id))

    def pending(self):
        with self._lock, self._db() as db:
            return db.execute("SELECT COUNT(*) FROM journal").fetchone()[0]

    def entries(self):
        with self._lock, self._db() as db:
            return db.execute(
                "SELECT kind, res_id, attempts, last_error FROM journal"
                " ORDER BY created_at").fetchall()


class _Closing(object):

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        return self.db

    def __exit__(self, *exc):
        self.db.close()
        return False
