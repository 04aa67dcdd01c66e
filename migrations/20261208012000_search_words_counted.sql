-- search: the words that typo corrections are made from (`search_words`)
-- leave with the last profile whose name holds them.
--
-- Until now a word stayed forever once learnt, so a deleted account's name
-- (a rare surname is personal data) stayed in the database. Each word now
-- counts the search documents whose display name or username holds it;
-- the trigger keeps the count as documents come, change and go, and a
-- word whose count reaches zero is deleted in the same transaction.

ALTER TABLE search_words ADD COLUMN uses INTEGER;

-- The counts as they are, and the words no document holds any more gone.
UPDATE search_words s SET uses = c.n
FROM (
    SELECT w, count(*)::int AS n
    FROM search_documents d, name_words(d.display_name || ' ' || d.username) AS w
    GROUP BY w
) c
WHERE c.w = s.word;
DELETE FROM search_words WHERE uses IS NULL;
-- No default: whoever fills the table by hand (a benchmark, a test) says
-- how many documents hold each word.
ALTER TABLE search_words
    ALTER COLUMN uses SET NOT NULL,
    ADD CONSTRAINT search_words_uses_counted CHECK (uses >= 0);

DROP TRIGGER search_documents_words ON search_documents;
DROP FUNCTION search_words_learn();

-- A change of one word's count by `delta`: the decrement and the delete are
-- one row lock, so a word another transaction adds meanwhile waits for it,
-- then inserts the word anew.
CREATE FUNCTION search_words_change(changed TEXT, delta INTEGER) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    left_uses integer;
BEGIN
    IF delta > 0 THEN
        INSERT INTO search_words (word, uses) VALUES (changed, delta)
        ON CONFLICT (word) DO UPDATE SET uses = search_words.uses + EXCLUDED.uses;
    ELSIF delta < 0 THEN
        UPDATE search_words SET uses = greatest(uses + delta, 0)
        WHERE word = changed
        RETURNING uses INTO left_uses;
        IF left_uses = 0 THEN
            DELETE FROM search_words WHERE word = changed AND uses = 0;
        END IF;
    END IF;
END;
$$;

-- Per statement, over its transition tables: a statement writing many
-- documents (a backfill, a seed) changes each word once, by the sum, rather
-- than once per row (which, in one transaction, leaves a chain of dead
-- versions of a common word's row to walk at every change). Words in word
-- order: two transactions changing the same words lock them in the same
-- order (no deadlock). An UPDATE trigger with transition tables may not
-- name columns, so every update is compared, old names against new: a
-- change of bio changes no count.
CREATE FUNCTION search_words_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM search_words_change(w, n::int)
    FROM (
        SELECT w, count(*) AS n
        FROM new_documents d, name_words(d.display_name || ' ' || d.username) AS w
        GROUP BY w ORDER BY w
    ) changes;
    RETURN NULL;
END;
$$;

CREATE FUNCTION search_words_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM search_words_change(w, -n::int)
    FROM (
        SELECT w, count(*) AS n
        FROM old_documents d, name_words(d.display_name || ' ' || d.username) AS w
        GROUP BY w ORDER BY w
    ) changes;
    RETURN NULL;
END;
$$;

CREATE FUNCTION search_words_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM search_words_change(w, delta::int)
    FROM (
        SELECT w, sum(delta) AS delta
        FROM (
            SELECT w, 1 AS delta
            FROM new_documents d, name_words(d.display_name || ' ' || d.username) AS w
            UNION ALL
            SELECT w, -1
            FROM old_documents d, name_words(d.display_name || ' ' || d.username) AS w
        ) both_sides
        GROUP BY w HAVING sum(delta) <> 0 ORDER BY w
    ) changes;
    RETURN NULL;
END;
$$;

CREATE TRIGGER search_documents_words
    AFTER INSERT ON search_documents
    REFERENCING NEW TABLE AS new_documents
    FOR EACH STATEMENT EXECUTE FUNCTION search_words_inserted();
CREATE TRIGGER search_documents_words_updated
    AFTER UPDATE ON search_documents
    REFERENCING OLD TABLE AS old_documents NEW TABLE AS new_documents
    FOR EACH STATEMENT EXECUTE FUNCTION search_words_updated();
CREATE TRIGGER search_documents_words_deleted
    AFTER DELETE ON search_documents
    REFERENCING OLD TABLE AS old_documents
    FOR EACH STATEMENT EXECUTE FUNCTION search_words_deleted();
