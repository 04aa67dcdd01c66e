-- The browsers that proved an account's password (device cookies,
-- `accounts::device_cookies`): a sign-in carrying a live one is counted per
-- browser, not against the account. The cookie is signed, but only a row
-- here makes it live, so a device can be forgotten: when it goes unused
-- past its life, when newer devices push it out of the account's few, and
-- when the credentials it was issued under change (`epoch` is the
-- account's `users.credential_epoch` at issue; a password change, a reset
-- or "sign out everywhere" moves that on and every older row is dead).
CREATE TABLE trusted_devices (
    -- SHA-256 of the cookie's nonce: the row alone does not make a cookie.
    id           BYTEA PRIMARY KEY CHECK (octet_length(id) = 32),
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    epoch        BIGINT NOT NULL CHECK (epoch >= 0),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX trusted_devices_by_user ON trusted_devices (user_id, last_used_at DESC);
