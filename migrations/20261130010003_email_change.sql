-- Changing the address: a link mailed to the new address confirms it, and
-- only then does `users.email` change. The token row carries the address
-- it confirms (only that purpose has one).
ALTER TABLE account_tokens DROP CONSTRAINT account_tokens_purpose_check;
ALTER TABLE account_tokens
    ADD CONSTRAINT account_tokens_purpose_check
    CHECK (purpose IN ('password_reset', 'email_verification', 'email_change'));
ALTER TABLE account_tokens
    ADD COLUMN new_email TEXT CHECK (new_email = lower(new_email) AND length(new_email) <= 254);
ALTER TABLE account_tokens
    ADD CONSTRAINT account_tokens_new_email_only_for_changes
    CHECK ((purpose = 'email_change') = (new_email IS NOT NULL));
