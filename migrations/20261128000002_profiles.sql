-- Public profiles: one per user, created with the account.
--
-- Kept apart from `users` so that the public read path never touches the
-- password hash or the email, and so the row the cache mirrors is small.
-- `version` is the optimistic-concurrency token: an edit names the version it
-- started from and fails with a conflict if someone saved in between.
CREATE TABLE profiles (
    user_id      BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    bio          TEXT NOT NULL DEFAULT '' CHECK (char_length(bio) <= 500),
    avatar_url   TEXT CHECK (avatar_url IS NULL OR (avatar_url LIKE 'https://%' AND char_length(avatar_url) <= 2048)),
    location     TEXT CHECK (location IS NULL OR char_length(location) <= 100),
    website      TEXT CHECK (website IS NULL OR char_length(website) <= 2048),
    version      INTEGER NOT NULL DEFAULT 1,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TRIGGER profiles_set_updated_at BEFORE UPDATE ON profiles
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- The public read is `users JOIN profiles WHERE users.username = $1`:
-- users_username_key finds the user, the primary key finds the profile.
