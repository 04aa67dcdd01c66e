-- What the event consumers and sign-in keep.

-- The devices a user has signed in from: a sign-in from a device not listed
-- here is a "new sign-in" the account page reports. A device is the browser,
-- its operating system and the client's network (an IPv4 /24, an IPv6 /48),
-- stored only as the SHA-256 of those three: no raw address is kept here.
CREATE TABLE known_devices (
    user_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_key    BYTEA NOT NULL CHECK (octet_length(device_key) = 32),
    first_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, device_key)
);

-- The account page's security history, written by the `activity` consumer.
-- One entry per event (event_id is unique), newest first per user.
CREATE TABLE account_activity (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     BIGINT NOT NULL,
    event_id    UUID NOT NULL UNIQUE,
    kind        TEXT NOT NULL CHECK (kind IN ('new_sign_in', 'password_changed', 'email_changed', 'sessions_revoked')),
    occurred_at TIMESTAMPTZ NOT NULL,
    -- Where it happened from, as the request saw it.
    ip          TEXT NOT NULL DEFAULT '' CHECK (char_length(ip) <= 64),
    device      TEXT NOT NULL DEFAULT '' CHECK (char_length(device) <= 100),
    -- How many sessions ended (sessions_revoked), else 0.
    count       INTEGER NOT NULL DEFAULT 0 CHECK (count >= 0)
);

CREATE INDEX account_activity_by_user ON account_activity (user_id, occurred_at DESC);

-- The search index's bookkeeping, written by the `search` consumer: the last
-- profile version indexed per user. Versions only go forward, so a late or
-- repeated event can never index an older profile over a newer one.
CREATE TABLE search_documents (
    user_id    BIGINT PRIMARY KEY,
    username   TEXT NOT NULL,
    version    INTEGER NOT NULL CHECK (version > 0),
    indexed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
