-- Secrets every instance of a deployment must share and none may invent on
-- its own: the key that seals the error a plain form post carries back to its
-- page (server/src/form_errors.rs). Created at random by the first instance
-- to start; never sent anywhere.
CREATE TABLE deployment_secrets (
    name       TEXT PRIMARY KEY,
    secret     BYTEA NOT NULL CHECK (octet_length(secret) >= 32),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A website is a link rendered on the public profile page: like the avatar,
-- only http(s) is a scheme a visitor can safely follow (never `javascript:`
-- or `data:`), whatever a future code path forgets to check. The same rule
-- as `Website::parse`.
ALTER TABLE profiles
    ADD CONSTRAINT profiles_website_scheme
    CHECK (website IS NULL OR website LIKE 'https://%' OR website LIKE 'http://%');
