-- The credential epoch: a counter of the account's credentials, moved by
-- everything that should make an earlier proof of identity worthless (a
-- password change or reset, "sign out everywhere", an address change,
-- deleting the account). Bumped only by `accounts::credentials::bump_epoch`,
-- on the transaction of that action.
--
-- A mailed link records the epoch it was issued under and is refused once
-- the account's epoch moved, so a link asked for before a recovery cannot
-- undo it; device cookies may carry it for the same reason.
ALTER TABLE users
    ADD COLUMN credential_epoch BIGINT NOT NULL DEFAULT 0 CHECK (credential_epoch >= 0);

-- Links live before this migration were issued under epoch 0, which is
-- every account's epoch at this point.
ALTER TABLE account_tokens
    ADD COLUMN credential_epoch BIGINT NOT NULL DEFAULT 0 CHECK (credential_epoch >= 0);

-- "This wasn't me": the notice to the old address of an address change
-- carries a link that cancels the change without signing in.
ALTER TABLE account_tokens DROP CONSTRAINT account_tokens_purpose_check;
ALTER TABLE account_tokens
    ADD CONSTRAINT account_tokens_purpose_check
    CHECK (purpose IN ('password_reset', 'email_verification', 'email_change', 'email_change_cancel'));
