"""The SQL of the conversation service's PostgreSQL event store (:mod:`.store_postgres`).

Templates with ``{schema}`` (and ``{table}``) filled in by ``services.runtime.pg.sql``.
"""

OUTCOME_TABLE = (
    "CREATE TABLE IF NOT EXISTS {schema}.processed_events ("
    "workspace_id text NOT NULL, event_id text NOT NULL, contact_id text NOT NULL, "
    "event_type text NOT NULL, occurred_at timestamptz NOT NULL, outcome text NOT NULL, "
    "reason text, PRIMARY KEY (workspace_id, event_id))"
)
DEAD_LETTER_TABLE = (
    "CREATE TABLE IF NOT EXISTS {schema}.dead_letters ("
    "id bigserial PRIMARY KEY, received_at timestamptz NOT NULL DEFAULT now(), "
    "source text NOT NULL, workspace_id text, event_id text, reason text NOT NULL, "
    "raw text NOT NULL)"
)
#: Autovacuum of the two insert-only tables (the events, ``{table}``, and the outcomes:
#: rows are never updated or deleted, so a vacuum only marks new pages all-visible):
#: after a fixed number of inserts, not 20 % of the table (PostgreSQL's default
#: ``autovacuum_vacuum_insert_scale_factor``), so each run scans about the pages written
#: since the last one however big the table grows, instead of a fifth of it at once.
#: Applied to a schema made by an older version when it is opened (``RELOPTION_CHECK``).
INSERT_ONLY_AUTOVACUUM = (("autovacuum_vacuum_insert_scale_factor", "0"),
                          ("autovacuum_vacuum_insert_threshold", "100000"))
INSERT_ONLY_TABLES = ("{table}", "processed_events")
TABLE_SETTINGS = tuple(
    f"ALTER TABLE {{schema}}.{table} SET ("
    + ", ".join(f"{name} = {value}" for name, value in INSERT_ONLY_AUTOVACUUM) + ")"
    for table in INSERT_ONLY_TABLES)
#: how long opening a schema waits for the lock TABLE_SETTINGS needs before it leaves
#: the table for the next start (a VACUUM holds that lock, an anti-wraparound one for long)
TABLE_SETTINGS_LOCK_TIMEOUT = "2s"
#: the ``pg_class.reloptions`` entries TABLE_SETTINGS leaves on each of those tables
RELOPTIONS = tuple(f"{name}={value}" for name, value in INSERT_ONLY_AUTOVACUUM)
SQL_INSERT_OUTCOMES = (
    "INSERT INTO {schema}.processed_events (workspace_id, event_id, contact_id, event_type, "
    "occurred_at, outcome, reason) SELECT * FROM unnest("
    "%b::text[], %b::text[], %b::text[], %b::text[], %b::timestamptz[], %b::text[], %b::text[])"
)
SQL_INSERT_DEAD_LETTERS = (
    "INSERT INTO {schema}.dead_letters (source, workspace_id, event_id, reason, raw) "
    "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[])"
)
# Four plain arrays in binary format: several times faster to send than
# eventsourcing's array of composites in text format.
SQL_INSERT_EVENTS = (
    "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
    "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
    "RETURNING notification_id"
)
# The aggregates a batch read without writing that are no longer at the version
# it read (0 = no events). Run after the events table is locked, so it is current.
SQL_MOVED = (
    "SELECT r.id FROM unnest(%b::uuid[], %b::bigint[]) AS r(id, version) "
    "WHERE r.version <> COALESCE((SELECT max(e.originator_version) FROM {schema}.{table} e "
    "WHERE e.originator_id = r.id), 0)"
)
# The keys that are stored. Each key is looked up by the primary key (LATERAL … LIMIT 1:
# a probe per key), whatever the table's size: as a join of the keys (estimated at 100
# rows, whatever their number) and the table, the planner scanned a table of up to
# ~50,000 outcomes whole for every batch (a hash join).
SQL_SEEN = (
    "SELECT k.workspace_id, k.event_id FROM unnest(%b::text[], %b::text[]) "
    "AS k(workspace_id, event_id) CROSS JOIN LATERAL (SELECT 1 FROM {schema}.processed_events p "
    "WHERE p.workspace_id = k.workspace_id AND p.event_id = k.event_id LIMIT 1) AS found"
)
# The same for keys given as one JSON array of [workspace_id, event_id] pairs (orjson
# writes it in C; psycopg's list dumper costs ~1 µs a key). Not for text with NUL.
SQL_SEEN_JSON = (
    "SELECT k.workspace_id, k.event_id FROM (SELECT k->>0 AS workspace_id, k->>1 AS event_id "
    "FROM json_array_elements(%b::json) AS k) AS k CROSS JOIN LATERAL (SELECT 1 "
    "FROM {schema}.processed_events p WHERE p.workspace_id = k.workspace_id "
    "AND p.event_id = k.event_id LIMIT 1) AS found"
)
SQL_LOAD_MANY = (
    "SELECT originator_id, state FROM {schema}.{table} WHERE originator_id = ANY(%b::uuid[]) "
    "ORDER BY originator_id, originator_version"
)
# eventsourcing's single-row tracking upsert, for several positions at once: a row
# is returned only for a position that moved forward.
SQL_INSERT_TRACKINGS = (
    "INSERT INTO {schema}.{table} AS t (application_name, notification_id) "
    "SELECT * FROM unnest(%b::text[], %b::bigint[]) ON CONFLICT (application_name) "
    "DO UPDATE SET notification_id = EXCLUDED.notification_id "
    "WHERE t.notification_id < EXCLUDED.notification_id RETURNING t.application_name"
)
# Positions recorded with an expectation (``Position.after``; -1 = never recorded)
# that storage does not meet: the batch was decided on top of a transaction that
# storage does not have (lost in a crash with synchronous_commit off, say).
SQL_UNEXPECTED = (
    "SELECT e.name FROM unnest(%b::text[], %b::bigint[]) AS e(name, expected) "
    "LEFT JOIN {schema}.{table} t ON t.application_name = e.name "
    "WHERE COALESCE(t.notification_id, -1) <> e.expected"
)
# A replay partition: the aggregates whose id's last byte is PART modulo PARTS
# (uuid5 bytes are uniform), in notification order, up to a notification id.
SQL_PARTITION = (
    "SELECT state FROM {schema}.{table} WHERE notification_id <= %s "
    "AND get_byte(uuid_send(originator_id), 15) %% %s = %s ORDER BY notification_id"
)
SQL_READ = (
    "SELECT notification_id, state FROM {schema}.{table} WHERE notification_id > %b "
    "ORDER BY notification_id LIMIT %b"
)
#: Name of the commit function (:data:`COMMIT_FUNCTION`); a new signature or body gets a
#: new name (a schema made by an older version gets the new function beside the old one).
#: v2: the writers' lock is :data:`LOCK_WRITERS`, not ``LOCK TABLE … IN EXCLUSIVE MODE``.
COMMIT_FUNCTION_NAME = "bonychat_commit_v2"
# The writers' lock: commit order = notification id order, as eventsourcing's
# EXCLUSIVE table lock gives, without locking out VACUUM and ANALYZE. EXCLUSIVE
# conflicts with the SHARE UPDATE EXCLUSIVE lock autovacuum holds: a commit then
# waited for the whole vacuum of the events table, or for deadlock_timeout (1 s)
# until PostgreSQL cancelled the vacuum, which came back a minute later and never
# finished on a busy table (docs/runtime.md, "Latency right after a backlog").
# Writers of this version serialise on a transaction advisory lock (named by
# ``lock_key``; released at commit or rollback) and take ROW EXCLUSIVE on the table
# before drawing ids, which still waits for a writer of an older version holding
# EXCLUSIVE, and makes one wait for them: old and new writers exclude each other.
LOCK_WRITERS = (
    "SELECT pg_advisory_xact_lock({lock_key})",
    "LOCK TABLE {schema}.{table} IN ROW EXCLUSIVE MODE",
)
# One small batch's whole transaction as one statement (the autocommit connection
# runs it as its own transaction: one round trip): what SQL_UNEXPECTED,
# SQL_INSERT_TRACKINGS, SQL_INSERT_OUTCOMES, SQL_INSERT_DEAD_LETTERS, the writers'
# lock (LOCK_WRITERS), NOTIFY, SQL_INSERT_EVENTS and SQL_MOVED do, in that order. A NULL array is
# an empty one. Every refusal is SQLSTATE 23000 (integrity_constraint_violation),
# a taken key the unique violation itself: both IntegrityError for the caller.
COMMIT_FUNCTION = (
    "CREATE OR REPLACE FUNCTION {schema}.{function}("
    "t_names text[], t_ids bigint[], x_names text[], x_ids bigint[], "
    "o_ws text[], o_event text[], o_contact text[], o_type text[], o_at timestamptz[], "
    "o_outcome text[], o_reason text[], "
    "d_source text[], d_ws text[], d_event text[], d_reason text[], d_raw text[], "
    "e_ids uuid[], e_versions bigint[], e_topics text[], e_states bytea[], "
    "r_ids uuid[], r_versions bigint[]) RETURNS SETOF bigint LANGUAGE plpgsql AS $body$ "
    "DECLARE bad text; forward int; "
    "BEGIN "
    "IF x_names IS NOT NULL THEN "
    "  SELECT e.name INTO bad FROM unnest(x_names, x_ids) AS e(name, expected) "
    "  LEFT JOIN {schema}.{tracking} t ON t.application_name = e.name "
    "  WHERE COALESCE(t.notification_id, -1) <> e.expected LIMIT 1; "
    "  IF FOUND THEN RAISE EXCEPTION 'position % is not where this batch continues from "
    "(storage lost or moved it)', bad USING ERRCODE = 'integrity_constraint_violation'; "
    "  END IF; "
    "END IF; "
    "IF t_names IS NOT NULL THEN "
    "  WITH moved AS (INSERT INTO {schema}.{tracking} AS t (application_name, notification_id) "
    "    SELECT * FROM unnest(t_names, t_ids) ON CONFLICT (application_name) "
    "    DO UPDATE SET notification_id = EXCLUDED.notification_id "
    "    WHERE t.notification_id < EXCLUDED.notification_id RETURNING 1) "
    "  SELECT count(*) INTO forward FROM moved; "
    "  IF forward <> cardinality(t_names) THEN "
    "    SELECT string_agg(n || '=' || i, ', ') INTO bad FROM unnest(t_names, t_ids) AS p(n, i); "
    "    RAISE EXCEPTION 'a tracked position did not move forward: %', bad "
    "    USING ERRCODE = 'integrity_constraint_violation'; "
    "  END IF; "
    "END IF; "
    "IF o_ws IS NOT NULL THEN "
    "  INSERT INTO {schema}.processed_events (workspace_id, event_id, contact_id, event_type, "
    "  occurred_at, outcome, reason) SELECT * FROM unnest(o_ws, o_event, o_contact, o_type, "
    "  o_at, o_outcome, o_reason); "
    "END IF; "
    "IF d_source IS NOT NULL THEN "
    "  INSERT INTO {schema}.dead_letters (source, workspace_id, event_id, reason, raw) "
    "  SELECT * FROM unnest(d_source, d_ws, d_event, d_reason, d_raw); "
    "END IF; "
    "IF e_ids IS NULL AND r_ids IS NULL THEN RETURN; END IF; "
    # commit order = notification id order (and no lock timeout): LOCK_WRITERS
    "SET LOCAL lock_timeout = '0s'; "
    "PERFORM pg_advisory_xact_lock({lock_key}); "
    "LOCK TABLE {schema}.{table} IN ROW EXCLUSIVE MODE; "
    "IF e_ids IS NOT NULL THEN "
    "  NOTIFY {channel}; "
    "  RETURN QUERY INSERT INTO {schema}.{table} (originator_id, originator_version, topic, "
    "  state) SELECT * FROM unnest(e_ids, e_versions, e_topics, e_states) "
    "  RETURNING notification_id; "
    "END IF; "
    "IF r_ids IS NOT NULL THEN "
    "  SELECT r.id INTO bad FROM unnest(r_ids, r_versions) AS r(id, version) "
    "  WHERE r.version <> COALESCE((SELECT max(e.originator_version) FROM {schema}.{table} e "
    "  WHERE e.originator_id = r.id), 0) LIMIT 1; "
    "  IF FOUND THEN RAISE EXCEPTION 'aggregate % moved after it was read (another writer)', "
    "  bad USING ERRCODE = 'integrity_constraint_violation'; END IF; "
    "END IF; "
    "END $body$"
)
SQL_COMMIT = (
    "SELECT * FROM {schema}.{function}(%b::text[], %b::bigint[], %b::text[], %b::bigint[], "
    "%b::text[], %b::text[], %b::text[], %b::text[], %b::timestamptz[], %b::text[], %b::text[], "
    "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], "
    "%b::uuid[], %b::bigint[], %b::text[], %b::bytea[], %b::uuid[], %b::bigint[])"
)
