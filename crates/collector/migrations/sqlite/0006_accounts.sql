-- Officials' accounts (spec/accounts.md): users with a role, web sessions,
-- API tokens and the audit log. Secrets are stored only as hashes: argon2id
-- for passwords, SHA-256 for session and API tokens (random, 256-bit).
CREATE TABLE users (
    id             INTEGER PRIMARY KEY,
    username       TEXT    NOT NULL UNIQUE,
    password_hash  TEXT    NOT NULL,  -- argon2id PHC string
    role           TEXT    NOT NULL,  -- admin | province | viewer
    province_code  TEXT,              -- the province of a `province` user
    created_at_ms  INTEGER NOT NULL,
    disabled_at_ms INTEGER
);
CREATE TABLE sessions (
    token_hash    BLOB    PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users (id),
    csrf          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY,
    token_hash    BLOB    NOT NULL UNIQUE,
    user_id       INTEGER NOT NULL REFERENCES users (id),
    name          TEXT    NOT NULL,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER
);
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    at_ms   INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    target  TEXT,
    details TEXT
);
