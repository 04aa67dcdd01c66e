-- Usernames of deleted accounts, kept from being taken again for 30 days
-- (sign-up checks this table): links to the old profile must not land on a
-- stranger's page the moment its owner leaves, and the caches' "gone"
-- markers for the name must have expired before anyone can own it again.
-- Only the name is kept: nothing else of the account survives deletion.
CREATE TABLE retired_usernames (
    username   TEXT PRIMARY KEY CHECK (username = lower(username) AND username ~ '^[a-z0-9_]{3,30}$'),
    retired_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
