-- The secrets of links Folio mails: a password reset (and, later, an address
-- to verify). The link carries 256 random bits; only their SHA-256 is kept,
-- so a copy of this table (a backup, a replica, a read-only leak) opens no
-- account. A token is issued by the mail consumer as it sends the mail
-- (ssr::accounts::tokens), never by the request that asked for it: the raw
-- value exists only in that process's memory and in the mail.
--
-- A row is live while it is neither used, nor revoked, nor expired. Keeping
-- used and revoked rows is what lets the page say which of these happened
-- to a link, instead of "not valid"; a user's rows a day past expiry are
-- deleted when their next token is issued (and with the account).
CREATE TABLE account_tokens (
    token_hash BYTEA PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL CHECK (purpose IN ('password_reset', 'email_verification')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL CHECK (expires_at > created_at),
    -- Redeemed: set by the one UPDATE that redeems it, so of two concurrent
    -- redemptions exactly one finds it still NULL.
    used_at    TIMESTAMPTZ,
    -- Superseded by a newer link of the same purpose, or (for a reset) by a
    -- password change.
    revoked_at TIMESTAMPTZ
);

-- "Revoke this user's live tokens of this purpose": on every new issue and
-- every password change.
CREATE INDEX account_tokens_live ON account_tokens (user_id, purpose)
    WHERE used_at IS NULL AND revoked_at IS NULL;
