-- Accounts. One row per person.
--
-- Usernames are stored already lower-cased by the `Username` domain type; the
-- CHECK makes that an invariant of the table, not a hope, and the plain unique
-- index then gives case-insensitive uniqueness and an index-only lookup.
-- Emails are lower-cased the same way.
CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username      TEXT NOT NULL CHECK (username = lower(username) AND username ~ '^[a-z0-9_]{3,30}$'),
    email         TEXT NOT NULL CHECK (email = lower(email) AND length(email) <= 254),
    -- A PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash): carries its own parameters,
    -- so we can tell when a stored hash is older than the current policy.
    password_hash TEXT NOT NULL,
    display_name  TEXT NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 100),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX users_username_key ON users (username);
CREATE UNIQUE INDEX users_email_key ON users (email);

-- Keep updated_at honest without relying on every UPDATE to remember it.
CREATE FUNCTION set_updated_at() RETURNS trigger AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
