-- Uploaded avatars. The picture itself lives in object storage (a local
-- directory or S3), as WebP files Folio encoded, named by the SHA-256 of
-- the largest one: `<avatar_key>-<size>.webp`. Two users who upload the same
-- picture share its files, so a file may be deleted only once no profile
-- names its key (the `media` event consumer checks this, under the key's
-- advisory lock, which an upload of the same key also takes).
--
-- `avatar_url` (an address the user pasted) stays: an uploaded avatar wins
-- when both are set.
ALTER TABLE profiles
    ADD COLUMN avatar_key TEXT CHECK (avatar_key IS NULL OR avatar_key ~ '^[0-9a-f]{64}$');

-- "Does anyone still use this picture?": the clean-up's question.
CREATE INDEX profiles_avatar_key ON profiles (avatar_key) WHERE avatar_key IS NOT NULL;
