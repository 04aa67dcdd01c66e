-- A new kind of security-history entry: sign-ins to the account were
-- refused for a while after too many wrong passwords from browsers that
-- had never signed in to it (someone guessing), while the owner's own
-- browsers (device cookies) could still sign in.
ALTER TABLE account_activity
    DROP CONSTRAINT account_activity_kind_check,
    ADD CONSTRAINT account_activity_kind_check
    CHECK (kind IN ('new_sign_in', 'password_changed', 'email_changed', 'sessions_revoked', 'sign_ins_blocked'));
