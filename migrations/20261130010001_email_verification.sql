-- Whether the account's address is proven: set when the link mailed at
-- sign-up (or a resent one) is used. Accounts work unverified; the account
-- page asks them to confirm. Accounts made before this column existed are
-- unverified too: none of them has proven anything.
ALTER TABLE users ADD COLUMN email_verified_at TIMESTAMPTZ;
