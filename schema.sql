-- scimd tenant database, schema version 9.
-- This file is the contract for a NEW tenant database; it is embedded in the binary
-- (include_str!) and run once. Older databases are brought forward by numbered
-- migrations in src/store/migrate.rs, never by editing this file in place.
--
-- Conventions:
--   * `pk` is the internal integer key used for joins; `id` is the SCIM id (UUID text).
--   * Times are UTC text 'YYYY-MM-DDTHH:MM:SS.mmmZ' so they sort and compare as strings.
--   * `version` increments on every write and is the resource's weak ETag.
--   * Attributes SCIM filters on are columns with indexes; the one JSON column (users.custom)
--     holds what each tenant declares for itself.

CREATE TABLE users (
    pk                  INTEGER PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,
    user_name           TEXT NOT NULL COLLATE NOCASE,
    -- v5: what userName uniqueness and lookups compare (src/names.rs: NFKC, whitespace
    -- collapsed, lowercase, NFC), computed by scimd; unique under users_user_name_key.
    user_name_key       TEXT NOT NULL,
    external_id         TEXT,
    active              INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),  -- v5: never NULL
    display_name        TEXT COLLATE NOCASE,
    nick_name           TEXT,
    profile_url         TEXT,
    title               TEXT,
    user_type           TEXT,
    preferred_language  TEXT,
    locale              TEXT,
    timezone            TEXT,
    name_formatted      TEXT,
    name_family         TEXT COLLATE NOCASE,
    name_given          TEXT COLLATE NOCASE,
    name_middle         TEXT,
    name_prefix         TEXT,
    name_suffix         TEXT,
    -- urn:ietf:params:scim:schemas:extension:enterprise:2.0:User
    ent_employee_number TEXT,
    ent_cost_center     TEXT,
    ent_organization    TEXT,
    ent_division        TEXT,
    ent_department      TEXT,
    ent_manager         TEXT,            -- the manager's SCIM id, as sent
    -- Accounts that may call the API (SCIM admin service accounts).
    role                TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'org_admin')),
    password_hash       TEXT,            -- PHC-like 'pbkdf2-sha256$iter$salt$hash'; NULL for IdP users
    created             TEXT NOT NULL,
    last_modified       TEXT NOT NULL,
    version             INTEGER NOT NULL DEFAULT 1,
    -- v3: soft delete hides a user from SCIM but keeps the row and its history.
    deleted_at          TEXT,
    license             TEXT NOT NULL DEFAULT 'none' CHECK (license IN ('creator', 'creator_float', 'none')),
    auth_type           TEXT NOT NULL DEFAULT 'idp' CHECK (auth_type IN ('basic', 'idp')),
    managed_by          TEXT NOT NULL DEFAULT 'idp' CHECK (managed_by IN ('idp', 'local')),
    -- v9: the tenant's custom attributes (tenant.toml [[extension]]) as one JSON object,
    -- {"<extension URN>": {"<attribute>": value, ...}}; NULL when the user has none.
    -- Filters read it with json_extract; a unique attribute gets an expression index
    -- (users_x_*) made when the tenant opens or reloads its settings.
    custom              TEXT
);
CREATE UNIQUE INDEX users_user_name_key ON users (user_name_key);
CREATE INDEX users_user_name ON users (user_name COLLATE NOCASE);
CREATE INDEX users_external_id ON users (external_id);
CREATE INDEX users_display_name ON users (display_name COLLATE NOCASE);
-- v4: inactive Basic-auth users leave IdP-managed groups at each sync; they are few.
CREATE INDEX users_inactive_basic ON users (pk) WHERE auth_type = 'basic' AND active = 0;
-- v7: service accounts are not listed by SCIM; an unfiltered list's total subtracts them.
CREATE INDEX users_service_accounts ON users (pk) WHERE role = 'org_admin';
-- v8: the users a list shows, in key order: a page at startIndex k skips k - 1 entries of
-- this index instead of k - 1 whole rows (a random page of 100 among the first 10,000 read
-- twice as fast).
CREATE INDEX users_listed ON users (pk) WHERE deleted_at IS NULL AND role = 'user';

-- emails: their own table, indexed on value (case-insensitive, as RFC 7643 says).
CREATE TABLE user_emails (
    user_pk   INTEGER NOT NULL REFERENCES users (pk) ON DELETE CASCADE,
    position  INTEGER NOT NULL,
    value     TEXT COLLATE NOCASE,
    type      TEXT COLLATE NOCASE,
    display   TEXT,
    is_primary INTEGER,               -- NULL: not sent; the client gets back what it sent
    PRIMARY KEY (user_pk, position)
) WITHOUT ROWID;
CREATE INDEX user_emails_value ON user_emails (value COLLATE NOCASE);

-- The other value/type/display/primary multi-valued attributes:
-- phoneNumbers, ims, photos, entitlements, roles, x509Certificates.
CREATE TABLE user_values (
    user_pk   INTEGER NOT NULL REFERENCES users (pk) ON DELETE CASCADE,
    attr      TEXT NOT NULL,
    position  INTEGER NOT NULL,
    value     TEXT,
    type      TEXT COLLATE NOCASE,
    display   TEXT,
    is_primary INTEGER,               -- NULL: not sent; the client gets back what it sent
    PRIMARY KEY (user_pk, attr, position)
) WITHOUT ROWID;
CREATE INDEX user_values_value ON user_values (attr, value);

CREATE TABLE user_addresses (
    user_pk        INTEGER NOT NULL REFERENCES users (pk) ON DELETE CASCADE,
    position       INTEGER NOT NULL,
    formatted      TEXT,
    street_address TEXT,
    locality       TEXT,
    region         TEXT,
    postal_code    TEXT,
    country        TEXT,
    type           TEXT COLLATE NOCASE,
    is_primary     INTEGER,
    PRIMARY KEY (user_pk, position)
) WITHOUT ROWID;

CREATE TABLE groups (
    pk            INTEGER PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL COLLATE NOCASE,
    display_name_key TEXT NOT NULL,  -- v5: as users.user_name_key, for displayName
    external_id   TEXT,
    created       TEXT NOT NULL,
    last_modified TEXT NOT NULL,
    version       INTEGER NOT NULL DEFAULT 1,
    -- v3: 'project' groups belong to the application and are invisible to SCIM.
    scope         TEXT NOT NULL DEFAULT 'org' CHECK (scope IN ('org', 'project')),
    managed_by    TEXT NOT NULL DEFAULT 'idp' CHECK (managed_by IN ('idp', 'local')),
    -- v3: a group a policy keeps from taking effect: kept, but its memberships are not applied.
    ignored       INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX groups_display_name_key ON groups (display_name_key);
CREATE INDEX groups_display_name ON groups (display_name COLLATE NOCASE);
CREATE INDEX groups_external_id ON groups (external_id);

-- v4: counts kept by triggers, read instead of counted on the hot paths: the users and
-- groups SCIM can see (an unfiltered list's totalResults) and the seats in use of each
-- licence (every create and reactivation). A seat is held by an active, not deleted user.
CREATE TABLE counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO counters (name, n) VALUES ('users', 0), ('groups', 0), ('seats:creator', 0), ('seats:creator_float', 0);
CREATE TRIGGER users_count_insert AFTER INSERT ON users BEGIN UPDATE counters SET n = n + 1 WHERE name = 'users' AND NEW.deleted_at IS NULL; UPDATE counters SET n = n + 1 WHERE name = 'seats:' || NEW.license AND NEW.active IS NOT 0 AND NEW.deleted_at IS NULL; END;
CREATE TRIGGER users_count_delete AFTER DELETE ON users BEGIN UPDATE counters SET n = n - 1 WHERE name = 'users' AND OLD.deleted_at IS NULL; UPDATE counters SET n = n - 1 WHERE name = 'seats:' || OLD.license AND OLD.active IS NOT 0 AND OLD.deleted_at IS NULL; END;
CREATE TRIGGER users_count_update AFTER UPDATE OF deleted_at, active, license ON users BEGIN UPDATE counters SET n = n + (NEW.deleted_at IS NULL) - (OLD.deleted_at IS NULL) WHERE name = 'users' AND (NEW.deleted_at IS NULL) <> (OLD.deleted_at IS NULL); UPDATE counters SET n = n - 1 WHERE name = 'seats:' || OLD.license AND OLD.active IS NOT 0 AND OLD.deleted_at IS NULL; UPDATE counters SET n = n + 1 WHERE name = 'seats:' || NEW.license AND NEW.active IS NOT 0 AND NEW.deleted_at IS NULL; END;
CREATE TRIGGER groups_count_insert AFTER INSERT ON groups WHEN NEW.scope = 'org' BEGIN UPDATE counters SET n = n + 1 WHERE name = 'groups'; END;
CREATE TRIGGER groups_count_delete AFTER DELETE ON groups WHEN OLD.scope = 'org' BEGIN UPDATE counters SET n = n - 1 WHERE name = 'groups'; END;
CREATE TRIGGER groups_count_update AFTER UPDATE OF scope ON groups WHEN (OLD.scope = 'org') <> (NEW.scope = 'org') BEGIN UPDATE counters SET n = n + (NEW.scope = 'org') - (OLD.scope = 'org') WHERE name = 'groups'; END;

-- v8: how often the rows SCIM lists changed (a row added or removed, or made visible or
-- hidden). An index-paged walk (Okta's import: startIndex 1, 101, 201, …) resumes after the
-- last primary key of the previous page instead of skipping `startIndex - 1` rows, but only
-- while this count is what it was when that page was read: then both give the same rows.
INSERT INTO counters (name, n) VALUES ('users:changes', 0), ('groups:changes', 0);
CREATE TRIGGER users_changes_insert AFTER INSERT ON users BEGIN UPDATE counters SET n = n + 1 WHERE name = 'users:changes'; END;
CREATE TRIGGER users_changes_delete AFTER DELETE ON users BEGIN UPDATE counters SET n = n + 1 WHERE name = 'users:changes'; END;
CREATE TRIGGER users_changes_update AFTER UPDATE OF deleted_at, role ON users WHEN (OLD.deleted_at IS NULL) <> (NEW.deleted_at IS NULL) OR OLD.role IS NOT NEW.role BEGIN UPDATE counters SET n = n + 1 WHERE name = 'users:changes'; END;
CREATE TRIGGER groups_changes_insert AFTER INSERT ON groups BEGIN UPDATE counters SET n = n + 1 WHERE name = 'groups:changes'; END;
CREATE TRIGGER groups_changes_delete AFTER DELETE ON groups BEGIN UPDATE counters SET n = n + 1 WHERE name = 'groups:changes'; END;
CREATE TRIGGER groups_changes_update AFTER UPDATE OF scope ON groups WHEN OLD.scope IS NOT NEW.scope BEGIN UPDATE counters SET n = n + 1 WHERE name = 'groups:changes'; END;

-- One row per (group, member): adding one member to a huge group touches one row.
CREATE TABLE memberships (
    group_pk INTEGER NOT NULL REFERENCES groups (pk) ON DELETE CASCADE,
    user_pk  INTEGER NOT NULL REFERENCES users (pk) ON DELETE CASCADE,
    -- v3: who added it; SCIM replaces only the IdP's memberships.
    source   TEXT NOT NULL DEFAULT 'idp' CHECK (source IN ('idp', 'local')),
    PRIMARY KEY (group_pk, user_pk)
) WITHOUT ROWID;
CREATE INDEX memberships_user ON memberships (user_pk, group_pk);

-- The activity log: every create, update, deactivate and delete of a user, group or
-- membership. Append-only; `detail` is JSON saying what changed (never secrets).
CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    at            TEXT NOT NULL,
    principal     TEXT NOT NULL,
    action        TEXT NOT NULL,   -- create, update, deactivate, reactivate, delete, restore, link, license, ignore, …
    resource_type TEXT NOT NULL,   -- User, Group, Membership, Token, Key
    resource_id   TEXT NOT NULL,
    detail        TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_resource ON events (resource_type, resource_id);

-- Bearer tokens (issue 4). A token is valid only while its row says so: the account's
-- current, unrevoked, unexpired token. The token text itself is never stored.
CREATE TABLE api_tokens (
    token_id     TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,           -- users.id of the owning account
    issued_at    TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    revoked_at   TEXT,
    last_warned  TEXT                     -- day (YYYY-MM-DD) of the last expiry warning
);
CREATE INDEX api_tokens_user ON api_tokens (user_id, revoked_at);

-- API credentials that may only mint tokens, each acting for one admin account.
CREATE TABLE api_clients (
    client_id    TEXT PRIMARY KEY,
    secret_hash  TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    created      TEXT NOT NULL
);

-- v5: deactivating or (soft) deleting an account revokes its bearer tokens, whichever path
-- did it (SCIM, the CLI, a store function), so reactivating or restoring it does not bring
-- an old token back; the activity log says so. `at` is the change's own lastModified.
CREATE TRIGGER users_revoke_tokens AFTER UPDATE OF active, deleted_at ON users WHEN NEW.active = 0 OR NEW.deleted_at IS NOT NULL BEGIN INSERT INTO events (at, principal, action, resource_type, resource_id, detail) SELECT NEW.last_modified, 'scimd', 'delete', 'Token', NEW.id, json_object('account', NEW.id, 'revoked', count(*), 'reason', CASE WHEN NEW.deleted_at IS NOT NULL THEN 'account deleted' ELSE 'account deactivated' END) FROM api_tokens WHERE user_id = NEW.id AND revoked_at IS NULL HAVING count(*) > 0; UPDATE api_tokens SET revoked_at = NEW.last_modified WHERE user_id = NEW.id AND revoked_at IS NULL; END;
CREATE TRIGGER users_revoke_tokens_delete AFTER DELETE ON users BEGIN UPDATE api_tokens SET revoked_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE user_id = OLD.id AND revoked_at IS NULL; END;

-- v6: the files a tenant needs beside its database, copied into it so that replicating the
-- database (Litestream ships databases, not files) carries them to a standby: the token
-- signing key pair, kept in step by keygen and delete-key and when the tenant opens, and
-- written back to files (0600) by `scimd replication restore`. The database is 0600 like
-- the key file, so the copy is no more exposed than the file.
CREATE TABLE tenant_files (
    name       TEXT PRIMARY KEY CHECK (name IN ('token-signing.key.pem', 'token-signing.pub.pem')),
    content    TEXT NOT NULL,
    stored_at  TEXT NOT NULL
);

-- v8: how often what authentication reads changed: a service account's state (name,
-- active, role, licence, password, deletion), a bearer token, the signing key's copy. A
-- request whose credentials were verified under this count reads it in the transaction that
-- reads its answer, instead of reading the account and token again (store/auth_check.rs).
INSERT INTO counters (name, n) VALUES ('auth:changes', 0);
CREATE TRIGGER auth_changes_accounts AFTER UPDATE OF user_name, active, role, license, password_hash, deleted_at ON users WHEN (OLD.role = 'org_admin' OR NEW.role = 'org_admin') AND (OLD.user_name IS NOT NEW.user_name OR OLD.active IS NOT NEW.active OR OLD.role IS NOT NEW.role OR OLD.license IS NOT NEW.license OR OLD.password_hash IS NOT NEW.password_hash OR OLD.deleted_at IS NOT NEW.deleted_at) BEGIN UPDATE counters SET n = n + 1 WHERE name = 'auth:changes'; END;
CREATE TRIGGER auth_changes_accounts_delete AFTER DELETE ON users WHEN OLD.role = 'org_admin' BEGIN UPDATE counters SET n = n + 1 WHERE name = 'auth:changes'; END;
CREATE TRIGGER auth_changes_tokens_insert AFTER INSERT ON api_tokens BEGIN UPDATE counters SET n = n + 1 WHERE name = 'auth:changes'; END;
CREATE TRIGGER auth_changes_tokens_update AFTER UPDATE OF token_id, user_id, expires_at, revoked_at ON api_tokens BEGIN UPDATE counters SET n = n + 1 WHERE name = 'auth:changes'; END;
CREATE TRIGGER auth_changes_tokens_delete AFTER DELETE ON api_tokens BEGIN UPDATE counters SET n = n + 1 WHERE name = 'auth:changes'; END;
CREATE TRIGGER auth_changes_keys_insert AFTER INSERT ON tenant_files BEGIN UPDATE counters SET n = n + 1 WHERE name = 'auth:changes'; END;
CREATE TRIGGER auth_changes_keys_update AFTER UPDATE ON tenant_files BEGIN UPDATE counters SET n = n + 1 WHERE name = 'auth:changes'; END;
CREATE TRIGGER auth_changes_keys_delete AFTER DELETE ON tenant_files BEGIN UPDATE counters SET n = n + 1 WHERE name = 'auth:changes'; END;

PRAGMA user_version = 9;
