-- A password nobody chose (the generated first admin password, or one generated when an admin
-- created the account): the UI asks for a new one at the first sign-in. Any password change
-- clears it.
ALTER TABLE users ADD COLUMN password_one_time INTEGER NOT NULL DEFAULT 0;
