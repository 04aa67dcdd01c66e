-- People search: the documents themselves, beside the bookkeeping the
-- `search` consumer already keeps in `search_documents`.
--
-- One row per public profile (every profile is public today: the page at
-- /u/<name> shows it to anyone). A row holds only what that page shows:
-- display name, username, location and bio; never the email. The consumer
-- writes it from the events, and only ever moves a row to a newer profile
-- version, so a late or repeated event cannot put an old bio back.
--
-- The search runs on the read replicas: these indexes are replicated with
-- the table, so adding replicas adds search capacity without a new service.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

ALTER TABLE search_documents
    ADD COLUMN display_name TEXT NOT NULL DEFAULT '',
    ADD COLUMN location     TEXT NOT NULL DEFAULT '',
    ADD COLUMN bio          TEXT NOT NULL DEFAULT '',
    -- When the profile last changed (the event's commit time): an empty
    -- search lists the most recently updated profiles first.
    ADD COLUMN updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The full-text document. Names and the username weigh most (A), the
    -- place next (B), the bio least (C). Names use the `simple`
    -- configuration: "Johns" is a surname, not a plural of "John", and no
    -- name is a stop word. The bio is English prose: stemmed, stop words out.
    -- The username's underscores split it into words, so "ada_lovelace" is
    -- found by "lovelace".
    ADD COLUMN document tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', display_name || ' ' || username), 'A')
        || setweight(to_tsvector('simple', location), 'B')
        || setweight(to_tsvector('english', bio), 'C')
    ) STORED;

-- Words, phrases and prefixes: `document @@ query`.
CREATE INDEX search_documents_document ON search_documents USING GIN (document);
-- The empty search: newest first, with the keyset's tie-break.
CREATE INDEX search_documents_recent ON search_documents (updated_at DESC, user_id DESC);
-- An exact username ranks first; it is looked up per matching row, but a
-- plain index keeps `WHERE username = …` cheap for tools and tests.
CREATE INDEX search_documents_username ON search_documents (username);

-- The query side, in one place: words and "quoted phrases" as
-- websearch_to_tsquery reads them, once with the names' configuration and
-- once with the bio's (a query word may be a name or a stemmed bio word),
-- and with `prefix` the last word matched as a prefix (what is being typed).
-- Only an operand ending in a lexeme gets the `:*` (not one ending in an
-- excluded phrase, `!( ... )`, nor one with no lexemes: only stop words);
-- an operand with no lexemes is left out.
CREATE FUNCTION people_tsquery(q TEXT, prefix BOOLEAN) RETURNS tsquery
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN numnode(s) = 0 THEN e
        WHEN numnode(e) = 0 THEN s
        ELSE s || e
    END
    FROM (
        SELECT
            CASE WHEN prefix AND right(s0::text, 1) = '''' THEN (s0::text || ':*')::tsquery ELSE s0 END AS s,
            CASE WHEN prefix AND right(e0::text, 1) = '''' THEN (e0::text || ':*')::tsquery ELSE e0 END AS e
        FROM (
            SELECT websearch_to_tsquery('simple', q) AS s0, websearch_to_tsquery('english', q) AS e0
        ) raw
    ) parts
$$;

-- Typos. Rather than comparing the query's trigrams with a million names
-- (each candidate row fetched and rechecked: hundreds of milliseconds), a
-- misspelt word is corrected against the words that names are made of, a
-- small table with a trigram index, and the corrected words are searched as
-- words (`people_fuzzy_tsquery`). A word stays when its profile goes: it is
-- never shown, only used to correct a query.
CREATE TABLE search_words (
    word TEXT PRIMARY KEY CHECK (word = lower(word) AND word <> '')
);
CREATE INDEX search_words_trgm ON search_words USING GIST (word gist_trgm_ops);

-- The words of names and usernames: letters only (a username's digits make
-- no word anyone misspells), two letters or more.
CREATE FUNCTION name_words(name TEXT) RETURNS SETOF TEXT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT DISTINCT w FROM regexp_split_to_table(lower(name), '[^[:alnum:]]+') AS w
    WHERE char_length(w) >= 2 AND w !~ '[0-9]'
$$;

CREATE FUNCTION search_words_learn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_words (word)
    SELECT name_words(NEW.display_name || ' ' || NEW.username)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;

CREATE TRIGGER search_documents_words
    AFTER INSERT OR UPDATE OF display_name, username ON search_documents
    FOR EACH ROW EXECUTE FUNCTION search_words_learn();

-- A query whose words match nothing, with each word replaced by the (at
-- most three) known name words nearest to it by trigram similarity, at
-- least 0.2 similar ("jonh" -> john | jon | jones): every word of the query
-- must find a correction, or the query matches nothing (NULL). The nearest words
-- come from the GiST index in distance order (`<->`), so a word with no
-- near neighbour costs three index probes, not a scan.
CREATE FUNCTION people_fuzzy_tsquery(q TEXT) RETURNS tsquery
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH words AS (
        SELECT w AS word FROM name_words(q) AS w
    ),
    corrected AS (
        SELECT words.word, string_agg(quote_literal(near.word), ' | ') AS alternatives
        FROM words CROSS JOIN LATERAL (
            SELECT s.word, s.word <-> words.word AS distance
            FROM search_words s
            ORDER BY s.word <-> words.word
            LIMIT 3
        ) near
        WHERE near.distance <= 0.8
        GROUP BY words.word
    )
    SELECT CASE
        WHEN (SELECT count(*) FROM words) > 0
         AND (SELECT count(*) FROM corrected) = (SELECT count(*) FROM words)
        THEN (SELECT string_agg('(' || alternatives || ')', ' & ') FROM corrected)::tsquery
        ELSE NULL -- matches nothing
    END
$$;

-- Backfill: every existing profile, at its current version. Rows the
-- consumer already has (bookkeeping only) get their document; versions only
-- go forward, so an event still on its way for an older version changes
-- nothing afterwards.
INSERT INTO search_documents (user_id, username, version, display_name, location, bio, updated_at)
SELECT u.id, u.username, p.version, u.display_name, coalesce(p.location, ''), p.bio, p.updated_at
FROM users u JOIN profiles p ON p.user_id = u.id
ON CONFLICT (user_id) DO UPDATE
SET username = EXCLUDED.username,
    version = GREATEST(search_documents.version, EXCLUDED.version),
    display_name = EXCLUDED.display_name,
    location = EXCLUDED.location,
    bio = EXCLUDED.bio,
    updated_at = EXCLUDED.updated_at,
    indexed_at = now();
