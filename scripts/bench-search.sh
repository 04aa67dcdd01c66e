#!/usr/bin/env bash
# People search at a million profiles (run by scripts/bench.sh after its
# scenarios, or alone): seeds `search_documents` of a scratch database with
# generate_series (names, places and bios drawn from word lists), builds the
# indexes, ANALYZEs, and measures with pgbench the statements that
# `search_people` runs (app/src/ssr/search/mod.rs, `sql`): the full-text
# query, and for a query no word matches the trigram query after it, each in
# its transaction with `SET LOCAL statement_timeout`. Reports p50/p99 per
# kind of query (3-letter prefixes, full names, typos, the empty query) at
# concurrency 1 and 16, the index sizes, and the plans.
#
#   ./scripts/bench-search.sh            1 000 000 profiles
#   ./scripts/bench-search.sh --smoke    20 000 profiles
#   ./scripts/bench-search.sh --rows N
# Writes bench/search.md (bench/out/search.md with --smoke). Needs only
# Postgres (no server build): the cost of a search is its SQL; the HTTP
# layer's own ceiling is in bench/results.md.
set -euo pipefail
source "$(dirname "$0")/common.sh"

ROWS=1000000
SMOKE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1; ROWS=20000 ;;
    --rows) ROWS="$2"; shift ;;
    *) echo "usage: $0 [--smoke] [--rows N]" >&2; exit 2 ;;
  esac
  shift
done

ensure_services
WORK="$ROOT/bench/out"
mkdir -p "$WORK"
if [ -n "$SMOKE" ]; then RESULTS="$WORK/search.md"; else RESULTS="$ROOT/bench/search.md"; fi
DB="folio_bench_search"
ADMIN_URL="${DATABASE_URL%/*}/postgres"
DB_URL="${DATABASE_URL%/*}/$DB"
PER_KIND=200
psql_db() { psql -X -q -v ON_ERROR_STOP=1 "$DB_URL" "$@"; }

say "scratch database $DB: migrations"
psql -X -q -v ON_ERROR_STOP=1 "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
for migration in "$ROOT"/migrations/*.sql; do
  psql_db -f "$migration" 2>&1 | grep -v "NOTICE" || true
done

say "seeding $ROWS profiles (generate_series)"
# The indexes are dropped for the load and built afterwards from their own
# definitions (faster than maintaining them row by row).
psql_db <<SQL
SET maintenance_work_mem = '512MB';
CREATE TEMP TABLE defs AS
  SELECT indexdef FROM pg_indexes
  WHERE tablename = 'search_documents' AND indexname <> 'search_documents_pkey';
DO \$\$ DECLARE r record; BEGIN
  FOR r IN SELECT indexname FROM pg_indexes WHERE tablename = 'search_documents' AND indexname <> 'search_documents_pkey'
  LOOP EXECUTE 'DROP INDEX ' || quote_ident(r.indexname); END LOOP;
END \$\$;

CREATE TEMP TABLE words (firsts text[], lasts text[], places text[], verbs text[], topics text[]);
INSERT INTO words VALUES (
  ARRAY['Ada','Alan','Grace','John','Mary','James','Linda','Robert','Patricia','Michael','Barbara','William','Elizabeth','David','Jennifer','Richard','Maria','Joseph','Susan','Thomas','Margaret','Charles','Dorothy','Chris','Lisa','Daniel','Nancy','Matthew','Karen','Anthony','Betty','Mark','Helen','Donald','Sandra','Steven','Donna','Paul','Carol','Andrew','Ruth','Joshua','Sharon','Kenneth','Michelle','Kevin','Laura','Brian','Sarah','George','Kimberly','Edward','Deborah','Ronald','Jessica','Timothy','Shirley','Jason','Cynthia','Jeffrey','Angela','Ryan','Melissa','Jacob','Brenda','Gary','Amy','Nicholas','Anna','Eric','Rebecca','Jonathan','Virginia','Stephen','Kathleen','Larry','Pamela','Justin','Martha','Scott','Debra','Brandon','Amanda','Benjamin','Stephanie','Samuel','Carolyn','Frank','Christine','Gregory','Marie','Raymond','Janet','Alexander','Catherine','Patrick','Frances','Jack','Ann','Dennis','Joyce','Jerry','Diane','Tyler','Alice','Aaron','Julie','Jose','Heather','Henry','Teresa','Adam','Doris','Douglas','Gloria','Nathan','Evelyn','Peter','Jean','Zachary','Cheryl','Kyle','Mildred','Walter','Katherine','Harold','Joan','Jeremy','Ashley','Ethan','Judith','Carl','Rose','Keith','Janice','Roger','Kelly','Gerald','Nicole','Christian','Judy','Terry','Christina','Sean','Kathy','Arthur','Theresa','Austin','Beverly','Noah','Denise','Lawrence','Tammy','Jesse','Irene','Joe','Jane','Bryan','Lori','Billy','Rachel','Jordan','Marilyn','Albert','Andrea','Dylan','Kathryn','Bruce','Louise','Willie','Sara','Gabriel','Anne','Alan','Jacqueline','Juan','Wanda','Logan','Bonnie','Wayne','Julia','Ralph','Ruby','Roy','Lois','Eugene','Tina','Randy','Phyllis','Vincent','Norma','Russell','Paula','Louis','Diana','Philip','Annie','Bobby','Lillian','Johnny','Emily','Bradley','Robin','Oluwaseun','Chidi','Amara','Kwame','Yuki','Haruto','Sakura','Wei','Mei','Jun','Priya','Arjun','Ananya','Rohan','Fatima','Omar','Layla','Youssef','Ines','Mateo','Sofia','Lucas','Camila','Santiago','Valentina','Nikolai','Olga','Ivan','Anastasia','Lars','Ingrid','Sven','Astrid','Pierre','Camille','Hugo','Chloe'],
  ARRAY['Smith','Johnson','Williams','Brown','Jones','Garcia','Miller','Davis','Rodriguez','Martinez','Hernandez','Lopez','Gonzalez','Wilson','Anderson','Thomas','Taylor','Moore','Jackson','Martin','Lee','Perez','Thompson','White','Harris','Sanchez','Clark','Ramirez','Lewis','Robinson','Walker','Young','Allen','King','Wright','Scott','Torres','Nguyen','Hill','Flores','Green','Adams','Nelson','Baker','Hall','Rivera','Campbell','Mitchell','Carter','Roberts','Gomez','Phillips','Evans','Turner','Diaz','Parker','Cruz','Edwards','Collins','Reyes','Stewart','Morris','Morales','Murphy','Cook','Rogers','Gutierrez','Ortiz','Morgan','Cooper','Peterson','Bailey','Reed','Kelly','Howard','Ramos','Kim','Cox','Ward','Richardson','Watson','Brooks','Chavez','Wood','James','Bennett','Gray','Mendoza','Ruiz','Hughes','Price','Alvarez','Castillo','Sanders','Patel','Myers','Long','Ross','Foster','Jimenez','Powell','Jenkins','Perry','Russell','Sullivan','Bell','Coleman','Butler','Henderson','Barnes','Gonzales','Fisher','Vasquez','Simmons','Romero','Jordan','Patterson','Alexander','Hamilton','Graham','Reynolds','Griffin','Wallace','Moreno','West','Cole','Hayes','Bryant','Herrera','Gibson','Ellis','Tran','Medina','Aguilar','Stevens','Murray','Ford','Castro','Marshall','Owens','Harrison','Fernandez','McDonald','Woods','Washington','Kennedy','Wells','Vargas','Henry','Chen','Freeman','Webb','Tucker','Guzman','Burns','Crawford','Olson','Simpson','Porter','Hunter','Gordon','Mendez','Silva','Shaw','Snyder','Mason','Dixon','Munoz','Hunt','Hicks','Holmes','Palmer','Wagner','Black','Robertson','Boyd','Rose','Stone','Salazar','Fox','Warren','Mills','Meyer','Rice','Schmidt','Garza','Daniels','Ferguson','Nichols','Stephens','Soto','Weaver','Ryan','Gardner','Payne','Grant','Dunn','Kelley','Spencer','Hawkins','Arnold','Pierce','Vazquez','Hansen','Peters','Santos','Hart','Bradley','Knight','Elliott','Cunningham','Duncan','Armstrong','Hudson','Carroll','Lane','Riley','Andrews','Alvarado','Ray','Delgado','Berry','Perkins','Hoffman','Johnston','Matthews','Pena','Richards','Contreras','Willis','Carpenter','Lawrence','Sandoval','Lovelace','Hopper','Turing','Okafor','Adeyemi','Mensah','Nakamura','Tanaka','Suzuki','Watanabe','Wang','Zhang','Liu','Sharma','Gupta','Singh','Haddad','Khalil','Nasser','Rossi','Russo','Ferrari','Ivanov','Petrov','Larsen','Nielsen','Dubois','Laurent','Moreau','Novak','Kowalski','Horvat'],
  ARRAY['','','','London','Lagos','Tokyo','Berlin','Paris','New York','Nairobi','Mumbai','Sao Paulo','Mexico City','Toronto','Sydney','Seoul','Cairo','Lima','Madrid','Rome','Oslo','Accra','Dublin','Lisbon','Vienna','Prague','Warsaw','Istanbul','Bangkok','Jakarta','Manila','Hanoi','Shanghai','Osaka','Delhi','Karachi','Dhaka','Tehran','Kyiv','Helsinki','Stockholm','Copenhagen','Amsterdam','Brussels','Zurich','Montreal','Chicago','Austin','Seattle','Denver','Boston','Atlanta','Miami','Bogota','Santiago','Buenos Aires','Cape Town','Kigali','Addis Ababa'],
  ARRAY['writes about','teaches','builds','studies','photographs','designs','researches','paints','codes','sings about','cooks','collects','repairs','reviews','translates','grows','sells','draws','plays','runs'],
  ARRAY['compilers','gardens','birds','databases','bicycles','mathematics','poetry','jazz','robots','bread','astronomy','typography','chess','pottery','maps','history','football','coffee','film','climbing','knitting','electronics','linguistics','architecture','beekeeping','sailing','physics','statistics','ceramics','novels','podcasts','privacy','music','marathons','tea','trains','carpentry','gaming','ecology','medicine']
);

ALTER TABLE search_documents DISABLE TRIGGER search_documents_words;
INSERT INTO search_documents (user_id, username, version, display_name, location, bio, updated_at)
SELECT i,
       lower(f) || '_' || lower(l) || i,
       1 + i % 5,
       f || ' ' || l,
       w.places[1 + abs(hashint8extended(i, 3) % array_length(w.places, 1))],
       'I ' || w.verbs[1 + abs(hashint8extended(i, 4) % array_length(w.verbs, 1))]
           || ' ' || w.topics[1 + abs(hashint8extended(i, 5) % array_length(w.topics, 1))]
           || ' and ' || w.topics[1 + abs(hashint8extended(i, 6) % array_length(w.topics, 1))]
           || ', mostly on weekends.',
       now() - (i % 100000) * interval '1 minute' - i * interval '1 millisecond'
FROM generate_series(1, $ROWS) AS i, words w,
     LATERAL (SELECT w.firsts[1 + abs(hashint8extended(i, 1) % array_length(w.firsts, 1))] AS f,
                     w.lasts[1 + abs(hashint8extended(i, 2) % array_length(w.lasts, 1))] AS l) n;

ALTER TABLE search_documents ENABLE TRIGGER search_documents_words;
-- What the trigger would have learnt, row by row.
INSERT INTO search_words (word, uses)
SELECT w, count(*) FROM search_documents, name_words(display_name || ' ' || username) AS w
GROUP BY w
ON CONFLICT (word) DO UPDATE SET uses = EXCLUDED.uses;
DO \$\$ DECLARE r record; BEGIN
  FOR r IN SELECT indexdef FROM defs LOOP EXECUTE r.indexdef; END LOOP;
END \$\$;
VACUUM ANALYZE search_words;

-- search_people's first question: how many matches does the planner expect?
CREATE FUNCTION bench_expected(q text) RETURNS float8 LANGUAGE plpgsql AS \$\$
DECLARE plan json;
BEGIN
  EXECUTE 'EXPLAIN (FORMAT JSON) SELECT 1 FROM search_documents d WHERE d.document @@ people_tsquery(\$1, true)'
    INTO plan USING q;
  RETURN (plan->0->'Plan'->>'Plan Rows')::float8;
END \$\$;
-- The same for a typo's corrections (a tsquery's text).
CREATE FUNCTION bench_expected_corrected(c text) RETURNS float8 LANGUAGE plpgsql AS \$\$
DECLARE plan json;
BEGIN
  IF c = '' THEN RETURN 0; END IF;
  EXECUTE 'EXPLAIN (FORMAT JSON) SELECT 1 FROM search_documents d WHERE d.document @@ \$1::tsquery'
    INTO plan USING c;
  RETURN (plan->0->'Plan'->>'Plan Rows')::float8;
END \$\$;
VACUUM ANALYZE search_documents;

-- The queries: $PER_KIND of each kind, drawn from the seeded names.
CREATE TABLE bench_queries (kind text, n int, q text, PRIMARY KEY (kind, n));
INSERT INTO bench_queries
SELECT 'prefix', g, lower(substr(CASE WHEN g % 2 = 0 THEN w.firsts[1 + g % array_length(w.firsts, 1)]
                                          ELSE w.lasts[1 + (g * 7) % array_length(w.lasts, 1)] END, 1, 3))
FROM generate_series(1, $PER_KIND) g, words w;
INSERT INTO bench_queries
SELECT 'name', g, (SELECT display_name FROM search_documents WHERE user_id = 1 + abs(hashint8extended(g, 9) % $ROWS))
FROM generate_series(1, $PER_KIND) g;
-- A typo: the second and third letters of a last name swapped ("Smith" -> "Simth").
INSERT INTO bench_queries
SELECT 'typo', g, lower(substr(l, 1, 1) || substr(l, 3, 1) || substr(l, 2, 1) || substr(l, 4))
FROM generate_series(1, $PER_KIND) g, words w,
     LATERAL (SELECT w.lasts[1 + (g * 11) % array_length(w.lasts, 1)] AS l) x;
INSERT INTO bench_queries SELECT 'empty', g, '' FROM generate_series(1, $PER_KIND) g;
SQL

# The statements of search_people (app/src/ssr/search/mod.rs, `sql`), first
# page: the full-text query, and the corrections' query when it found
# nobody (by recency when the planner expects more than FUZZY_RANK_LIMIT,
# 2 000, matches for them).
cat >"$WORK/search-words.sql" <<'SQL'
\set i random(1, 200)
SELECT q FROM bench_queries WHERE kind = :kind AND n = :i \gset
BEGIN;
SELECT set_config('statement_timeout', '500', true), set_config('plan_cache_mode', 'force_custom_plan', true);
SELECT (bench_expected(:q::text) > 5000)::int AS many \gset
\if :many
SELECT set_config('enable_bitmapscan', 'off', true);
SELECT d.user_id, d.username, d.display_name, d.location, d.bio, d.updated_at AS key FROM search_documents d
WHERE d.document @@ people_tsquery(:q::text, true) AND d.username <> lower(:q::text)
ORDER BY d.updated_at DESC, d.user_id DESC
LIMIT 21;
SELECT d.user_id FROM search_documents d
WHERE d.username = lower(:q::text) AND d.document @@ people_tsquery(:q::text, true);
\else
SELECT count(*) AS hits FROM (
  WITH m AS (
    SELECT d.user_id, d.username, d.display_name, d.location, d.bio,
           ((CASE WHEN d.username = lower(:q::text) THEN 2 ELSE 0 END)
            + ts_rank(d.document, people_tsquery(:q::text, true)))::real AS score
    FROM search_documents d
    WHERE d.document @@ people_tsquery(:q::text, true)
  )
  SELECT d.*, d.score AS key FROM m d
  ORDER BY d.score DESC, d.user_id ASC
  LIMIT 21
) page \gset
\if :hits = 0
SELECT coalesce(people_fuzzy_tsquery(:q::text)::text, '') AS corrected \gset
SELECT (bench_expected_corrected(:corrected) > 2000)::int AS many_corrected \gset
\if :many_corrected
SELECT set_config('enable_bitmapscan', 'off', true);
SELECT d.user_id, d.username, d.display_name, d.location, d.bio, d.updated_at AS key FROM search_documents d
WHERE d.document @@ :corrected::tsquery
ORDER BY d.updated_at DESC, d.user_id DESC
LIMIT 21;
\else
WITH m AS (
  SELECT d.user_id, d.username, d.display_name, d.location, d.bio,
         ((CASE WHEN d.username = lower(:q::text) THEN 2 ELSE 0 END)
          + ts_rank(d.document, :corrected::tsquery))::real AS score
  FROM search_documents d
  WHERE d.document @@ :corrected::tsquery
)
SELECT d.*, d.score AS key FROM m d
ORDER BY d.score DESC, d.user_id ASC
LIMIT 21;
\endif
\endif
\endif
END;
SQL
cat >"$WORK/search-empty.sql" <<'SQL'
BEGIN;
SELECT set_config('statement_timeout', '500', true);
SELECT d.user_id, d.username, d.display_name, d.location, d.bio, d.updated_at AS key FROM search_documents d
ORDER BY d.updated_at DESC, d.user_id DESC
LIMIT 21;
END;
SQL

# p50 and p99, milliseconds, of a pgbench per-transaction log.
percentiles() {
  cat "$@" | awk '{print $3}' | sort -n | awk '
    { v[NR] = $1 }
    END {
      if (NR == 0) { print "n/a | n/a | 0"; exit }
      p50 = v[int((NR - 1) * 0.50) + 1]; p99 = v[int((NR - 1) * 0.99) + 1];
      printf "%.1f | %.1f | %d", p50 / 1000, p99 / 1000, NR
    }'
}

# One row: kind, clients. Every client runs its share of $PER_KIND queries
# (at least 25), after a warm-up pass.
measure() {
  local kind="$1" clients="$2" script="$WORK/search-words.sql"
  [ "$kind" = empty ] && script="$WORK/search-empty.sql"
  local per_client=$(( PER_KIND / clients )); [ "$per_client" -lt 25 ] && per_client=25
  rm -f "$WORK"/pgbench_log.* "$WORK"/search-log.*
  pgbench -n -M extended -D kind="$kind" -f "$script" -c "$clients" -j 2 -t 20 "$DB_URL" >/dev/null 2>&1 || true
  # A search the statement timeout cancels aborts its pgbench client: the
  # row then counts fewer searches, and says how many were cancelled.
  (cd "$WORK" && pgbench -n -M extended -D kind="$kind" -f "$script" -c "$clients" -j 2 -t "$per_client" \
      -l --log-prefix=search-log "$DB_URL" >"$WORK/pgbench-$kind-$clients.txt" 2>&1) || true
  local cancelled; cancelled=$(grep -c "statement timeout" "$WORK/pgbench-$kind-$clients.txt" || true)
  echo "| $kind | $clients | $(percentiles "$WORK"/search-log.*) | $cancelled |"
}

say "measuring"
{
  echo "# People search at $ROWS profiles"
  echo
  echo "\`scripts/bench-search.sh${SMOKE:+ --smoke}\`, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs shared (load average $(cut -d' ' -f1-3 /proc/loadavg) before measuring: anything else running skews every row), $(psql -X -At "$DB_URL" -c 'SHOW server_version')."
  echo "pgbench runs the statements of \`search_people\`'s first page in their transaction with the statement timeout: the planner's estimate of the matches, then either the matches by recency (more than 5 000 expected) or ranked full text, then, when no word matched, the typo-corrected words (ranked, or by recency when more than 2 000 matches are expected); latency is per search, from pgbench's per-transaction log."
  echo "Queries: $PER_KIND of each kind, picked at random per transaction: 3-letter prefixes of seeded names, full names of seeded profiles, last names with two letters swapped, the empty query."
  echo
  echo "| query | clients | p50 ms | p99 ms | searches | cancelled (500 ms) |"
  echo "|---|---|---|---|---|---|"
  for clients in 1 16; do
    for kind in prefix name typo empty; do
      measure "$kind" "$clients"
    done
  done
  echo
  echo "## Sizes"
  echo
  echo "| relation | size |"
  echo "|---|---|"
  psql -X -At -F ' | ' "$DB_URL" -c "
    SELECT '| ' || c.relname, pg_size_pretty(pg_relation_size(c.oid)) || ' |'
    FROM pg_class c
    WHERE c.relname LIKE 'search_documents%' AND c.relkind IN ('r', 'i')
    ORDER BY pg_relation_size(c.oid) DESC"
  echo
  echo "## Plans"
  plan() {
    echo; echo "$1:"; echo; echo '```'
    psql -X -At "$DB_URL" -c "SET enable_bitmapscan = ${3:-on}" -c "EXPLAIN (ANALYZE) $2" | grep -v '^SET$'
    echo '```'
  }
  plan "How many does the planner expect for \`mar\`?" "SELECT 1 FROM search_documents d WHERE d.document @@ people_tsquery('mar', true)"
  plan "Broad: \`mar\` by recency" "SELECT d.user_id FROM search_documents d WHERE d.document @@ people_tsquery('mar', true) AND d.username <> 'mar' ORDER BY d.updated_at DESC, d.user_id DESC LIMIT 21" off
  plan "Ranked: \`grace hopper\`" "WITH m AS (SELECT d.user_id, ((CASE WHEN d.username = 'grace hopper' THEN 2 ELSE 0 END) + ts_rank(d.document, people_tsquery('grace hopper', true)))::real AS score FROM search_documents d WHERE d.document @@ people_tsquery('grace hopper', true)) SELECT * FROM m ORDER BY score DESC, user_id LIMIT 21"
  local_corrected=$(psql -X -At "$DB_URL" -c "SELECT people_fuzzy_tsquery('hoppre')")
  quoted=$(echo "$local_corrected" | sed "s/'/''/g")
  plan "Typo: \`hoppre\`, corrected to \`$local_corrected\`, ranked (what fewer than 2 000 expected matches get)" "WITH m AS (SELECT d.user_id, ts_rank(d.document, '$quoted'::tsquery)::real AS score FROM search_documents d WHERE d.document @@ '$quoted'::tsquery) SELECT * FROM m ORDER BY score DESC, user_id LIMIT 21"
  plan "Typo: \`hoppre\` by recency (what it gets: $(psql -X -At "$DB_URL" -c "SELECT round(bench_expected_corrected('$quoted'))") matches expected)" "SELECT d.user_id FROM search_documents d WHERE d.document @@ '$quoted'::tsquery ORDER BY d.updated_at DESC, d.user_id DESC LIMIT 21" off
} | tee "$RESULTS"
say "written to $RESULTS"
