-- Millstream's SQLite schema and named queries; the store is their only reader.
-- A run's state history is kept in its own row (msgpack chunks appended by the upsert, see
-- rows.py), so recording a state costs one row write however many states a batch holds.
-- Sections start with "-- migration: N" (applied in order, tracked in PRAGMA user_version)
-- or "-- name: NAME" (a query the store runs by name).

-- migration: 1
CREATE TABLE flow (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);

CREATE TABLE flow_run (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    flow_id TEXT NOT NULL,
    flow_name TEXT NOT NULL,
    flow_version TEXT,
    parameters TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    parent_task_run_id TEXT,
    parent_flow_run_id TEXT,
    root_flow_run_id TEXT,
    deployment_id TEXT,
    idempotency_key TEXT UNIQUE,
    entrypoint TEXT,
    run_count INTEGER NOT NULL DEFAULT 0,
    state_id TEXT,
    state_type TEXT,
    state_name TEXT,
    state_message TEXT,
    state_timestamp TEXT,
    state_details TEXT,
    start_time TEXT,
    end_time TEXT,
    expected_start_time TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    pid INTEGER,
    hostname TEXT,
    heartbeat TEXT,
    parameters_blob BLOB,
    history TEXT NOT NULL DEFAULT '',
    result BLOB
);
CREATE INDEX ix_flow_run_state_created ON flow_run (state_type, created DESC);
CREATE INDEX ix_flow_run_created ON flow_run (created DESC);
CREATE INDEX ix_flow_run_flow_name ON flow_run (flow_name, created DESC);
CREATE INDEX ix_flow_run_start_time ON flow_run (start_time);
CREATE INDEX ix_flow_run_parent ON flow_run (parent_flow_run_id);
CREATE INDEX ix_flow_run_idempotency ON flow_run (idempotency_key);

CREATE TABLE task_run (
    id TEXT PRIMARY KEY,
    flow_run_id TEXT,
    name TEXT NOT NULL,
    task_key TEXT NOT NULL,
    task_name TEXT NOT NULL,
    dynamic_key TEXT NOT NULL,
    task_version TEXT,
    cache_key TEXT,
    cache_expiration TEXT,
    parameters TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    run_count INTEGER NOT NULL DEFAULT 0,
    state_id TEXT,
    state_type TEXT,
    state_name TEXT,
    state_message TEXT,
    state_timestamp TEXT,
    state_details TEXT,
    start_time TEXT,
    end_time TEXT,
    expected_start_time TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    history TEXT NOT NULL DEFAULT '',
    result BLOB
);
CREATE INDEX ix_task_run_flow_run ON task_run (flow_run_id);

CREATE TABLE log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flow_run_id TEXT,
    task_run_id TEXT,
    level INTEGER NOT NULL,
    name TEXT NOT NULL,
    message TEXT NOT NULL,
    timestamp TEXT NOT NULL
);
CREATE INDEX ix_log_flow_run ON log (flow_run_id, id);
CREATE INDEX ix_log_task_run ON log (task_run_id, id);

CREATE TABLE cache (
    key TEXT PRIMARY KEY,
    result BLOB NOT NULL,
    expiration TEXT,
    task_run_id TEXT,
    created TEXT NOT NULL
);

CREATE TABLE deployment (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    flow_name TEXT NOT NULL,
    entrypoint TEXT,
    description TEXT,
    version TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    parameters TEXT NOT NULL DEFAULT '{}',
    parameters_blob BLOB,
    parameter_schema TEXT,
    enforce_parameter_schema INTEGER NOT NULL DEFAULT 0,
    paused INTEGER NOT NULL DEFAULT 0,
    schedules TEXT NOT NULL DEFAULT '[]',
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    UNIQUE (flow_name, name)
);
CREATE INDEX ix_flow_run_scheduled ON flow_run (state_type, deployment_id, expected_start_time);

CREATE TABLE variable (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);

-- migration: 2
-- A digest of the task function's code when the task run ran: recovery reuses a recorded result
-- only when the code resumed still has the same digest (NULL: recorded before it was kept).
ALTER TABLE task_run ADD COLUMN code_fingerprint TEXT;

-- migration: 3
-- Compact rows: ids as 16-byte BLOBs, times as INTEGER microseconds since the epoch (UTC),
-- histories as msgpack BLOBs (see rows.py) that also hold the current state's id, time and
-- details (the row keeps its type, name and message, for filters), a state name NULL when it
-- is its type's default name, and no task_run.updated (it always equalled the state's time). ms_id, ms_time, ms_details and
-- ms_history are functions the migration registers on its connection; a value they cannot
-- read is kept as it was.
CREATE TABLE flow_v3 (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL
);
INSERT INTO flow_v3 SELECT ms_id(id), name, ms_time(created) FROM flow;
DROP TABLE flow;
ALTER TABLE flow_v3 RENAME TO flow;

CREATE TABLE flow_run_v3 (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    flow_id BLOB NOT NULL,
    flow_name TEXT NOT NULL,
    flow_version TEXT,
    parameters TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    parent_task_run_id BLOB,
    parent_flow_run_id BLOB,
    root_flow_run_id BLOB,
    deployment_id BLOB,
    idempotency_key TEXT UNIQUE,
    entrypoint TEXT,
    run_count INTEGER NOT NULL DEFAULT 0,
    state_type TEXT,
    state_name TEXT,
    state_message TEXT,
    start_time INTEGER,
    end_time INTEGER,
    expected_start_time INTEGER,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    pid INTEGER,
    hostname TEXT,
    heartbeat INTEGER,
    parameters_blob BLOB,
    history BLOB NOT NULL DEFAULT x'',
    result BLOB
);
INSERT INTO flow_run_v3 SELECT
    ms_id(id), name, ms_id(flow_id), flow_name, flow_version, parameters, tags,
    ms_id(parent_task_run_id), ms_id(parent_flow_run_id), ms_id(root_flow_run_id),
    ms_id(deployment_id), idempotency_key, entrypoint, run_count, state_type,
    ms_name(state_type, state_name), state_message, ms_time(start_time), ms_time(end_time),
    ms_time(expected_start_time), ms_time(created), ms_time(updated), pid, hostname,
    ms_time(heartbeat), parameters_blob, ms_history(history, id, 'flow_run_id'), result
FROM flow_run ORDER BY rowid;
DROP TABLE flow_run;
ALTER TABLE flow_run_v3 RENAME TO flow_run;
CREATE INDEX ix_flow_run_state_created ON flow_run (state_type, created DESC);
CREATE INDEX ix_flow_run_created ON flow_run (created DESC);
CREATE INDEX ix_flow_run_flow_name ON flow_run (flow_name, created DESC);
CREATE INDEX ix_flow_run_start_time ON flow_run (start_time);
CREATE INDEX ix_flow_run_parent ON flow_run (parent_flow_run_id);
CREATE INDEX ix_flow_run_idempotency ON flow_run (idempotency_key);
CREATE INDEX ix_flow_run_scheduled ON flow_run (state_type, deployment_id, expected_start_time);

CREATE TABLE task_run_v3 (
    id BLOB PRIMARY KEY,
    flow_run_id BLOB,
    name TEXT NOT NULL,
    task_key TEXT NOT NULL,
    task_name TEXT NOT NULL,
    dynamic_key TEXT NOT NULL,
    task_version TEXT,
    cache_key TEXT,
    cache_expiration INTEGER,
    parameters TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    run_count INTEGER NOT NULL DEFAULT 0,
    state_type TEXT,
    state_name TEXT,
    state_message TEXT,
    start_time INTEGER,
    end_time INTEGER,
    expected_start_time INTEGER,
    created INTEGER NOT NULL,
    history BLOB NOT NULL DEFAULT x'',
    result BLOB,
    code_fingerprint TEXT
);
INSERT INTO task_run_v3 SELECT
    ms_id(id), ms_id(flow_run_id), name, task_key, task_name, dynamic_key, task_version,
    cache_key, ms_time(cache_expiration), parameters, tags, run_count,
    state_type, ms_name(state_type, state_name), state_message, ms_time(start_time),
    ms_time(end_time),
    ms_time(expected_start_time), ms_time(created),
    ms_history(history, id, 'task_run_id'), result, code_fingerprint
FROM task_run ORDER BY rowid;
DROP TABLE task_run;
ALTER TABLE task_run_v3 RENAME TO task_run;
CREATE INDEX ix_task_run_flow_run ON task_run (flow_run_id);

CREATE TABLE log_v3 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flow_run_id BLOB,
    task_run_id BLOB,
    level INTEGER NOT NULL,
    name TEXT NOT NULL,
    message TEXT NOT NULL,
    timestamp INTEGER NOT NULL
);
INSERT INTO log_v3 SELECT
    id, ms_id(flow_run_id), ms_id(task_run_id), level, name, message, ms_time(timestamp)
FROM log;
DROP TABLE log;
ALTER TABLE log_v3 RENAME TO log;
-- The rowid (id) ends every index entry already: (flow_run_id) orders lines like
-- (flow_run_id, id) without storing the id twice.
CREATE INDEX ix_log_flow_run ON log (flow_run_id);
CREATE INDEX ix_log_task_run ON log (task_run_id);

CREATE TABLE cache_v3 (
    key TEXT PRIMARY KEY,
    result BLOB NOT NULL,
    expiration INTEGER,
    task_run_id BLOB,
    created INTEGER NOT NULL
);
INSERT INTO cache_v3 SELECT key, result, ms_time(expiration), ms_id(task_run_id), ms_time(created)
FROM cache;
DROP TABLE cache;
ALTER TABLE cache_v3 RENAME TO cache;

CREATE TABLE deployment_v3 (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    flow_name TEXT NOT NULL,
    entrypoint TEXT,
    description TEXT,
    version TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    parameters TEXT NOT NULL DEFAULT '{}',
    parameters_blob BLOB,
    parameter_schema TEXT,
    enforce_parameter_schema INTEGER NOT NULL DEFAULT 0,
    paused INTEGER NOT NULL DEFAULT 0,
    schedules TEXT NOT NULL DEFAULT '[]',
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    UNIQUE (flow_name, name)
);
INSERT INTO deployment_v3 SELECT
    ms_id(id), name, flow_name, entrypoint, description, version, tags, parameters,
    parameters_blob, parameter_schema, enforce_parameter_schema, paused, schedules,
    ms_time(created), ms_time(updated)
FROM deployment;
DROP TABLE deployment;
ALTER TABLE deployment_v3 RENAME TO deployment;

CREATE TABLE variable_v3 (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
INSERT INTO variable_v3 SELECT name, value, tags, ms_time(created), ms_time(updated)
FROM variable;
DROP TABLE variable;
ALTER TABLE variable_v3 RENAME TO variable;

-- name: upsert_flow
INSERT INTO flow (id, name, created) VALUES (?, ?, ?)
ON CONFLICT (name) DO NOTHING;

-- name: upsert_flow_run
INSERT INTO flow_run (
    id, name, flow_id, flow_name, flow_version, parameters, tags, parent_task_run_id,
    parent_flow_run_id, root_flow_run_id, deployment_id, idempotency_key, entrypoint, run_count,
    state_type, state_name, state_message, start_time, end_time, expected_start_time, created,
    updated, pid, hostname, heartbeat, parameters_blob, history, result
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    name = excluded.name, parameters = excluded.parameters, tags = excluded.tags,
    run_count = excluded.run_count, state_type = excluded.state_type,
    state_name = excluded.state_name, state_message = excluded.state_message,
    start_time = excluded.start_time,
    end_time = excluded.end_time, updated = excluded.updated, pid = excluded.pid,
    hostname = excluded.hostname, heartbeat = excluded.heartbeat,
    parameters_blob = coalesce(excluded.parameters_blob, flow_run.parameters_blob),
    history = CAST(flow_run.history || excluded.history AS BLOB),
    result = coalesce(excluded.result, flow_run.result);

-- name: upsert_task_run
INSERT INTO task_run (
    id, flow_run_id, name, task_key, task_name, dynamic_key, task_version, cache_key,
    cache_expiration, parameters, tags, run_count, state_type, state_name, state_message,
    start_time, end_time, expected_start_time, created, history, result, code_fingerprint,
    task_inputs
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    name = excluded.name, cache_key = excluded.cache_key,
    cache_expiration = excluded.cache_expiration, run_count = excluded.run_count,
    state_type = excluded.state_type, state_name = excluded.state_name,
    state_message = excluded.state_message, start_time = excluded.start_time, end_time = excluded.end_time,
    history = CAST(task_run.history || excluded.history AS BLOB),
    result = coalesce(excluded.result, task_run.result),
    task_inputs = coalesce(excluded.task_inputs, task_run.task_inputs);

-- name: insert_log
INSERT INTO log (flow_run_id, task_run_id, level, name, message, timestamp, extra)
VALUES (?, ?, ?, ?, ?, ?, ?);

-- name: select_flow_run
SELECT * FROM flow_run WHERE id = ?;

-- name: select_task_run
SELECT * FROM task_run WHERE id = ?;

-- name: select_task_runs_of_flow_run
SELECT * FROM task_run WHERE flow_run_id = ? ORDER BY created, rowid;

-- name: select_flow_run_history
SELECT history FROM flow_run WHERE id = ?;

-- name: select_task_run_history
SELECT history FROM task_run WHERE id = ?;

-- name: select_flow
SELECT * FROM flow WHERE id = ?;

-- name: select_flow_by_name
SELECT * FROM flow WHERE name = ?;

-- name: upsert_cache
INSERT INTO cache (key, result, expiration, task_run_id, created) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    result = excluded.result, expiration = excluded.expiration,
    task_run_id = excluded.task_run_id, created = excluded.created;

-- name: select_cache
SELECT result, expiration FROM cache WHERE key = ?;

-- name: select_completed_task_results
-- Oldest first: when a call ran again on an earlier resume, its latest record wins.
SELECT task_key, dynamic_key, result, code_fingerprint FROM task_run
WHERE flow_run_id = ? AND state_type = 'COMPLETED' AND result IS NOT NULL
ORDER BY created, rowid;

-- name: select_flow_run_by_idempotency_key
SELECT * FROM flow_run WHERE idempotency_key = ?;

-- name: update_heartbeats
UPDATE flow_run SET heartbeat = ? WHERE id = ?;

-- name: select_recoverable_flow_runs
SELECT * FROM flow_run
WHERE state_type IN ('PENDING', 'RUNNING') AND parent_flow_run_id IS NULL
ORDER BY created;

-- name: claim_flow_run
-- A claim raises the run's lease epoch: writes carrying an older one are refused (fencing).
UPDATE flow_run SET pid = ?, hostname = ?, heartbeat = ?, epoch = epoch + 1
WHERE id = ? AND state_type IN ('PENDING', 'RUNNING')
    AND coalesce(pid, -1) = coalesce(?, -1) AND coalesce(hostname, '') = coalesce(?, '')
    AND coalesce(heartbeat, '') = coalesce(?, '')
RETURNING id, epoch;

-- name: user_version
PRAGMA user_version;

-- name: count_schema_objects
SELECT count(*) FROM sqlite_master;

-- name: vacuum
VACUUM;

-- name: ping
SELECT 1;

-- name: select_flow_run_result
SELECT result FROM flow_run WHERE id = ?;

-- name: select_cancelling
-- "/*ids*/" stands for one "?" per id (see migrations.expand).
SELECT id FROM flow_run WHERE state_type = 'CANCELLING' AND id IN (/*ids*/);

-- name: select_flow_run_lineage
SELECT deployment_id, parent_flow_run_id, parameters FROM flow_run WHERE id = ?;

-- name: select_newest_flow_run_of_flow
SELECT id FROM flow_run WHERE flow_name = ? ORDER BY created DESC LIMIT 1;

-- name: delete_flow_run
DELETE FROM flow_run WHERE id = ?;

-- name: delete_task_runs_of_flow_run
DELETE FROM task_run WHERE flow_run_id = ?;

-- name: delete_logs_of_flow_run
DELETE FROM log WHERE flow_run_id = ?;

-- name: update_flow_run_state_if
-- Applied only while the run is in one of the expected state types (a JSON list); a final
-- state also sets the end time. The new state is appended to the history.
UPDATE flow_run SET state_type = ?, state_name = ?, state_message = ?, updated = ?,
    end_time = CASE WHEN ? THEN ? ELSE end_time END,
    history = CAST(history || ? AS BLOB)
WHERE id = ? AND state_type IN (SELECT value FROM json_each(?));

-- name: update_flow_run_fields
-- client.update_flow_run: each field given replaces the recorded one (NULL: left as it is).
UPDATE flow_run SET name = COALESCE(?, name), flow_version = COALESCE(?, flow_version),
    parameters = COALESCE(?, parameters), parameters_blob = COALESCE(?, parameters_blob),
    tags = COALESCE(?, tags), updated = ?
WHERE id = ?;

-- name: insert_scheduled_flow_run
-- The same columns as upsert_flow_run; a run that exists already is left alone.
INSERT INTO flow_run (
    id, name, flow_id, flow_name, flow_version, parameters, tags, parent_task_run_id,
    parent_flow_run_id, root_flow_run_id, deployment_id, idempotency_key, entrypoint, run_count,
    state_type, state_name, state_message, start_time, end_time, expected_start_time, created,
    updated, pid, hostname, heartbeat, parameters_blob, history, result
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING;

-- name: claim_due_flow_run
-- The oldest due Scheduled run of these deployments ("/*ids*/": one "?" per id), for a worker.
UPDATE flow_run SET state_type = 'PENDING', state_name = 'Pending', pid = ?, hostname = ?,
    heartbeat = ?, updated = ?, epoch = epoch + 1
WHERE id = (
    SELECT id FROM flow_run
    WHERE state_type = 'SCHEDULED' AND deployment_id IN (/*ids*/)
        AND coalesce(expected_start_time, created) <= ?
    ORDER BY coalesce(expected_start_time, created) LIMIT 1
) AND state_type = 'SCHEDULED'
RETURNING *;

-- name: upsert_deployment
INSERT INTO deployment (
    id, name, flow_name, entrypoint, description, version, tags, parameters, parameters_blob,
    parameter_schema, enforce_parameter_schema, paused, schedules, created, updated,
    concurrency_limit, collision_strategy
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET entrypoint = excluded.entrypoint,
    description = excluded.description, version = excluded.version,
    tags = excluded.tags, parameters = excluded.parameters,
    parameters_blob = excluded.parameters_blob,
    parameter_schema = excluded.parameter_schema,
    enforce_parameter_schema = excluded.enforce_parameter_schema,
    paused = excluded.paused, schedules = excluded.schedules, updated = excluded.updated,
    concurrency_limit = excluded.concurrency_limit,
    collision_strategy = excluded.collision_strategy;

-- name: select_deployment_by_name
SELECT * FROM deployment WHERE flow_name = ? AND name = ?;

-- name: select_deployment
SELECT * FROM deployment WHERE id = ?;

-- name: select_deployments
SELECT * FROM deployment ORDER BY flow_name, name LIMIT ? OFFSET ?;

-- name: update_deployment_paused
UPDATE deployment SET paused = ? WHERE id = ?;

-- name: insert_variable
INSERT INTO variable (name, value, tags, created, updated) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (name) DO NOTHING;

-- name: upsert_variable
INSERT INTO variable (name, value, tags, created, updated) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET value = excluded.value, tags = excluded.tags,
    updated = excluded.updated;

-- name: select_variable
SELECT name, value, tags FROM variable WHERE name = ?;

-- name: select_variables
SELECT name, value, tags FROM variable ORDER BY name ASC LIMIT ? OFFSET ?;

-- name: delete_variable
DELETE FROM variable WHERE name = ?;

-- name: update_dropped_marker_of_flow_run
-- The marker is the run's last row under its logger: the (flow_run_id, id) index finds it.
UPDATE log SET message = ? WHERE id = (
    SELECT id FROM log WHERE flow_run_id = ? AND name = ? ORDER BY id DESC LIMIT 1
);

-- name: update_dropped_marker_of_task_run
UPDATE log SET message = ? WHERE id = (
    SELECT id FROM log WHERE flow_run_id IS NULL AND task_run_id = ? AND name = ?
    ORDER BY id DESC LIMIT 1
);

-- name: select_epochs
-- The lease epochs of these flow runs ("/*ids*/": one "?" per id), read in the writer's
-- transaction before it writes their rows: a run claimed since by another owner is fenced.
SELECT id, epoch FROM flow_run WHERE id IN (/*ids*/);

-- name: claim_new_flow_run
-- A caller-given flow run id is taken by one atomic insert: the process whose row lands runs
-- the body; any other waits for that run's outcome.
INSERT INTO flow_run (
    id, name, flow_id, flow_name, flow_version, parameters, tags, parent_task_run_id,
    parent_flow_run_id, root_flow_run_id, deployment_id, idempotency_key, entrypoint, run_count,
    state_type, state_name, state_message, start_time, end_time, expected_start_time, created,
    updated, pid, hostname, heartbeat, parameters_blob, history, result
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: quick_check
PRAGMA quick_check;

-- name: integrity_check
PRAGMA integrity_check;

-- migration: 4
-- The lease epoch of a flow run: each claim raises it, and the writer refuses a row whose
-- owner holds an older one (a stopped worker whose run was taken over cannot complete it).
ALTER TABLE flow_run ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;

-- migration: 5
-- Artifacts (Prefect's prefect.artifacts): made by a flow or task run, or outside any run.
-- data is the JSON of what Prefect sends as the artifact's data (markdown text, a table's JSON
-- text, a progress number, a link, an image URL). Each index answers one page or read: a
-- run's artifacts, the newest of a key, everything newest first.
CREATE TABLE artifact (
    id BLOB PRIMARY KEY,
    key TEXT,
    type TEXT,
    description TEXT,
    data TEXT,
    metadata TEXT,
    flow_run_id BLOB,
    task_run_id BLOB,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
CREATE INDEX ix_artifact_flow_run ON artifact (flow_run_id, created);
CREATE INDEX ix_artifact_task_run ON artifact (task_run_id, created);
CREATE INDEX ix_artifact_key ON artifact (key, created DESC);
CREATE INDEX ix_artifact_created ON artifact (created DESC);
-- The dashboard: a deployment's runs newest first (its runs page filter, its last runs), with
-- their state types so that counting them per state reads the index alone. Partial: runs not
-- made from a deployment (most) cost nothing here.
CREATE INDEX ix_flow_run_deployment_created ON flow_run (deployment_id, created DESC, state_type)
WHERE deployment_id IS NOT NULL;
-- The runs page's search by name prefix (a range on name).
CREATE INDEX ix_flow_run_name ON flow_run (name);
-- Each tag of each flow run, newest first per tag, with the run's state type: the runs page's
-- tag filter reads one range of it (and counts per state without visiting the runs) instead
-- of every run's tags. Kept by triggers, so no writer code knows of it; runs without tags
-- cost the triggers one WHEN test.
CREATE TABLE flow_run_tag (
    tag TEXT NOT NULL,
    created INTEGER NOT NULL,
    flow_run_id BLOB NOT NULL,
    state_type TEXT,
    PRIMARY KEY (tag, created, flow_run_id)
) WITHOUT ROWID;
CREATE INDEX ix_flow_run_tag_state ON flow_run_tag (tag, state_type);
INSERT OR IGNORE INTO flow_run_tag (tag, created, flow_run_id, state_type)
SELECT tags.value, flow_run.created, flow_run.id, flow_run.state_type
FROM flow_run, json_each(flow_run.tags) AS tags
WHERE flow_run.tags != '[]' AND tags.type = 'text';
CREATE TRIGGER flow_run_tag_insert AFTER INSERT ON flow_run WHEN new.tags != '[]'
BEGIN
    INSERT OR IGNORE INTO flow_run_tag (tag, created, flow_run_id, state_type)
    SELECT value, new.created, new.id, new.state_type FROM json_each(new.tags)
    WHERE type = 'text';
END;
CREATE TRIGGER flow_run_tag_state AFTER UPDATE OF state_type ON flow_run
WHEN new.tags != '[]' AND old.tags = new.tags AND old.state_type IS NOT new.state_type
BEGIN
    UPDATE flow_run_tag SET state_type = new.state_type
    WHERE tag IN (SELECT value FROM json_each(new.tags)) AND created = new.created
        AND flow_run_id = new.id;
END;
CREATE TRIGGER flow_run_tag_update AFTER UPDATE OF tags ON flow_run WHEN old.tags != new.tags
BEGIN
    DELETE FROM flow_run_tag WHERE tag IN (SELECT value FROM json_each(old.tags))
        AND created = old.created AND flow_run_id = old.id;
    INSERT OR IGNORE INTO flow_run_tag (tag, created, flow_run_id, state_type)
    SELECT value, new.created, new.id, new.state_type FROM json_each(new.tags)
    WHERE type = 'text';
END;
CREATE TRIGGER flow_run_tag_delete AFTER DELETE ON flow_run WHEN old.tags != '[]'
BEGIN
    DELETE FROM flow_run_tag WHERE tag IN (SELECT value FROM json_each(old.tags))
        AND created = old.created AND flow_run_id = old.id;
END;

-- name: insert_artifact
INSERT INTO artifact (
    id, key, type, description, data, metadata, flow_run_id, task_run_id, created, updated
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: update_artifact
-- A description given as NULL keeps the one recorded (Prefect's update leaves it unset).
UPDATE artifact SET data = ?, description = coalesce(?, description), updated = ? WHERE id = ?;

-- name: delete_artifact
DELETE FROM artifact WHERE id = ?;

-- name: delete_artifacts_of_flow_run
DELETE FROM artifact WHERE flow_run_id = ?;

-- name: select_artifact
SELECT * FROM artifact WHERE id = ?;

-- name: count_flow_runs_by_state
-- The dashboard's counts per state (served by ix_flow_run_state_created alone).
SELECT state_type, count(*) FROM flow_run GROUP BY state_type;

-- name: select_flow_names
SELECT name FROM flow ORDER BY name LIMIT ?;

-- name: select_log_levels_of_flow_run
-- A run's log lines from id ? on, at or above a level, oldest first (the live log view).
SELECT * FROM log WHERE flow_run_id = ? AND id > ? AND level >= ? ORDER BY id LIMIT ?;

-- name: select_task_runs_page_of_flow_run
SELECT * FROM task_run WHERE flow_run_id = ? ORDER BY created, rowid LIMIT ?;

-- name: select_subflow_runs
-- likelihood: most runs have no parent, which can make statistics call the index useless.
SELECT * FROM flow_run WHERE likelihood(parent_flow_run_id = ?, 0.001) ORDER BY created LIMIT ?;

-- name: select_last_runs_of_deployment
SELECT * FROM flow_run WHERE deployment_id = ? ORDER BY created DESC LIMIT ?;

-- name: select_next_runs_of_deployment
SELECT * FROM flow_run
WHERE state_type = 'SCHEDULED' AND deployment_id = ?
ORDER BY expected_start_time LIMIT ?;

-- name: select_live_workers
-- Runs held by a process (a worker's leases): who holds them and their last heartbeat.
SELECT id, name, flow_name, deployment_id, pid, hostname, heartbeat, state_type, state_name
FROM flow_run WHERE state_type IN ('PENDING', 'RUNNING', 'CANCELLING') AND pid IS NOT NULL
ORDER BY heartbeat DESC LIMIT ?;

-- name: select_task_run_result
SELECT result FROM task_run WHERE id = ?;

-- migration: 6
-- Flow control: global concurrency limits (tag limits are named "tag:<tag>", deployment limits
-- "deployment:<id>") and the leases that hold their slots. A lease row is one holder's slots on
-- one limit until "expires" (microseconds since the epoch): a holder that dies stops renewing
-- it, and the next acquirer deletes it. Rate-limit occupancy is not leased: it decays, kept as
-- "decayed_slots" as of "decay_stamp".
CREATE TABLE concurrency_limit (
    name TEXT PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,
    slot_limit INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    slot_decay_per_second REAL NOT NULL DEFAULT 0,
    decayed_slots REAL NOT NULL DEFAULT 0,
    decay_stamp INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);

-- Keyed by limit first, without a rowid: taking or giving back a slot writes one b-tree.
CREATE TABLE concurrency_lease (
    limit_name TEXT NOT NULL,
    id BLOB NOT NULL,
    slots INTEGER NOT NULL,
    expires INTEGER NOT NULL,
    holder TEXT,
    PRIMARY KEY (limit_name, id)
) WITHOUT ROWID;

-- Background task runs (Task.delay): queued durably, claimed by one task worker at a time under
-- a lease (a worker that dies stops renewing it and another takes the run), finished once:
-- the finishing write is fenced by the claim's owner. "outcome" holds the result (or the
-- exception) encoded by the msgpack serializer with its pickle fallback.
CREATE TABLE task_queue (
    id BLOB PRIMARY KEY,
    task_name TEXT NOT NULL,
    parameters BLOB NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT UNIQUE,
    status TEXT NOT NULL,
    owner TEXT,
    lease_expires INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    outcome BLOB,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);

CREATE INDEX task_queue_by_due ON task_queue (task_name, status, priority, created);

-- Inputs sent to a flow run (send_input / receive_input), by key.
CREATE TABLE flow_run_input (
    flow_run_id BLOB NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    sender TEXT,
    created INTEGER NOT NULL,
    PRIMARY KEY (flow_run_id, key)
) WITHOUT ROWID;

-- migration: 7
-- A deployment's concurrency limit (to_deployment(concurrency_limit=...)): how many of its runs
-- may run at once (NULL: no limit) and what happens to a run over it ('ENQUEUE' or
-- 'CANCEL_NEW'; NULL: Prefect's default, ENQUEUE).
ALTER TABLE deployment ADD COLUMN concurrency_limit INTEGER;
ALTER TABLE deployment ADD COLUMN collision_strategy TEXT;
-- name: insert_concurrency_limit
INSERT INTO concurrency_limit (
    name, id, slot_limit, active, slot_decay_per_second, decayed_slots, decay_stamp, created,
    updated
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (name) DO NOTHING;

-- name: select_concurrency_limits_named
SELECT name, id, slot_limit, active, slot_decay_per_second, decayed_slots, decay_stamp, created,
    updated
FROM concurrency_limit WHERE name IN (/*ids*/);

-- name: select_concurrency_limits
SELECT name, id, slot_limit, active, slot_decay_per_second, decayed_slots, decay_stamp, created,
    updated
FROM concurrency_limit WHERE name LIKE ? ESCAPE '\' ORDER BY name LIMIT ? OFFSET ?;

-- name: update_concurrency_limit
UPDATE concurrency_limit SET name = ?, slot_limit = ?, active = ?, slot_decay_per_second = ?,
    decayed_slots = ?, decay_stamp = ?, updated = ?
WHERE name = ?;

-- name: rename_concurrency_leases
UPDATE concurrency_lease SET limit_name = ? WHERE limit_name = ?;

-- name: update_decayed_slots
UPDATE concurrency_limit SET decayed_slots = ?, decay_stamp = ? WHERE name = ?;

-- name: delete_concurrency_limit
DELETE FROM concurrency_limit WHERE name = ?;

-- name: delete_concurrency_leases_of_limit
DELETE FROM concurrency_lease WHERE limit_name = ?;

-- name: delete_expired_concurrency_leases
DELETE FROM concurrency_lease WHERE limit_name IN (/*ids*/) AND expires <= ?;

-- name: select_concurrency_limits_with_leased
-- Each limit with the slots its live leases hold (the first "?" is the time now).
SELECT name, id, slot_limit, active, slot_decay_per_second, decayed_slots, decay_stamp, created,
    updated,
    (SELECT coalesce(sum(slots), 0) FROM concurrency_lease
        WHERE limit_name = concurrency_limit.name AND expires > ?)
FROM concurrency_limit WHERE name IN (/*ids*/);

-- name: select_lease_holders
SELECT limit_name, id, slots, expires, holder FROM concurrency_lease
WHERE limit_name IN (/*ids*/) AND expires > ? ORDER BY limit_name, expires;

-- name: insert_concurrency_lease
INSERT INTO concurrency_lease (id, limit_name, slots, expires, holder) VALUES (?, ?, ?, ?, ?);

-- name: delete_concurrency_lease
DELETE FROM concurrency_lease WHERE limit_name IN (/*ids*/) AND id = ?;

-- name: renew_concurrency_lease
UPDATE concurrency_lease SET expires = ? WHERE id = ?;

-- name: insert_queued_task
INSERT INTO task_queue (id, task_name, parameters, priority, idempotency_key, status, created,
    updated)
VALUES (?, ?, ?, ?, ?, 'SCHEDULED', ?, ?)
ON CONFLICT DO NOTHING;

-- name: select_queued_task_by_key
SELECT id FROM task_queue WHERE idempotency_key = ?;

-- name: claim_queued_task
-- The highest-priority, oldest waiting run of these tasks, or one whose worker's lease lapsed.
UPDATE task_queue SET status = 'RUNNING', owner = ?, lease_expires = ?, attempts = attempts + 1,
    updated = ?
WHERE id = (
    SELECT id FROM task_queue
    WHERE task_name IN (/*ids*/)
        AND (status = 'SCHEDULED' OR (status = 'RUNNING' AND lease_expires <= ?))
    ORDER BY priority DESC, created LIMIT 1
) AND (status = 'SCHEDULED' OR (status = 'RUNNING' AND lease_expires <= ?))
RETURNING id, task_name, parameters, attempts;

-- name: renew_queued_task
UPDATE task_queue SET lease_expires = ? WHERE id = ? AND owner = ? AND status = 'RUNNING';

-- name: finish_queued_task
UPDATE task_queue SET status = ?, outcome = ?, updated = ?, lease_expires = NULL
WHERE id = ? AND owner = ? AND status = 'RUNNING';

-- name: select_queued_task
SELECT status, outcome, task_name, attempts FROM task_queue WHERE id = ?;

-- name: resume_suspended_flow_run
-- A suspended run goes back to Scheduled (due now) for a worker or `recover` to continue.
UPDATE flow_run SET state_type = 'SCHEDULED', state_name = ?, state_message = ?, updated = ?,
    expected_start_time = ?, history = CAST(history || ? AS BLOB)
WHERE id = ? AND state_type = 'PAUSED';

-- name: select_resumed_flow_runs
-- Resumed suspended runs that no deployment's worker will take: `recover` continues them.
SELECT * FROM flow_run
WHERE state_type = 'SCHEDULED' AND deployment_id IS NULL AND parent_flow_run_id IS NULL
    AND run_count > 0
ORDER BY created;

-- name: claim_resumed_flow_run
UPDATE flow_run SET state_type = 'PENDING', state_name = 'Pending', pid = ?, hostname = ?,
    heartbeat = ?, updated = ?
WHERE id = ? AND state_type = 'SCHEDULED'
RETURNING *;

-- name: insert_flow_run_input
INSERT INTO flow_run_input (flow_run_id, key, value, sender, created) VALUES (?, ?, ?, ?, ?);

-- name: select_flow_run_inputs
SELECT key, value, sender, created FROM flow_run_input
WHERE flow_run_id = ? AND key LIKE ? ESCAPE '\' ORDER BY created, key;

-- name: insert_concurrency_lease_if_free
-- One concurrency slot of one active limit without decay, taken only if it is free: the
-- uncontended case in a single statement (anything else goes the general way).
INSERT INTO concurrency_lease (limit_name, id, slots, expires, holder)
SELECT name, ?, ?, ?, ? FROM concurrency_limit
WHERE name = ? AND active = 1 AND slot_decay_per_second = 0 AND slot_limit >= ? + (
    SELECT coalesce(sum(slots), 0) FROM concurrency_lease WHERE limit_name = ? AND expires > ?
);

-- name: delete_concurrency_lease_of
DELETE FROM concurrency_lease WHERE limit_name = ? AND id = ?;

-- migration: 8
-- A task run's inputs (Prefect's task_inputs): for each parameter, the upstream task runs its
-- value came from ("wait_for" for those waited for), as msgpack of {parameter: [16-byte ids]};
-- NULL when none did (most task runs: they pay one NULL).
ALTER TABLE task_run ADD COLUMN task_inputs BLOB;
-- The extra fields of a log line (logger.info(..., extra={...}) and get_run_logger(**extra)),
-- as a JSON object; NULL when it has none.
ALTER TABLE log ADD COLUMN extra TEXT;

-- name: select_task_run_names
-- Names of these task runs ("/*ids*/": one "?" per id): the dashboard's links to upstream runs.
SELECT id, name FROM task_run WHERE id IN (/*ids*/);
