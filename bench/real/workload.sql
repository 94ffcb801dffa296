-- bench/real/workload.sql: an SQLite workload for bench/run --real, run by the
-- sqlite3 CLI on an in-memory database under every allocator:
--   sqlite3 -batch -cmd '.parameter set @n 200000' :memory: < bench/real/workload.sql
-- @n rows are generated (a recursive CTE, deterministic arithmetic, no
-- random()), indexed, grouped, joined, updated, partly deleted, ranked with a
-- window function and serialised with the JSON functions. The output must be
-- the same under every allocator.
PRAGMA cache_size = -131072;

CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, score REAL, payload TEXT);

WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < @n)
INSERT INTO items
SELECT x, 'item-' || ((x * 2654435761) % 1000003), (x * 40503) % 997,
       ((x * 7919) % 100000) / 100.0, substr(hex(zeroblob(256)), 1, 16 + (x * 31) % 480)
FROM seq;

CREATE INDEX items_grp ON items(grp);
CREATE INDEX items_name ON items(name);

CREATE TABLE groups AS
SELECT grp, count(*) AS n, sum(score) AS total, max(length(payload)) AS maxlen
FROM items GROUP BY grp;

SELECT 'groups', count(*), sum(n), round(sum(total), 2) FROM groups;

SELECT 'above-mean', grp, count(*) FROM items JOIN groups USING (grp)
WHERE items.score > groups.total / groups.n
GROUP BY grp ORDER BY 3 DESC, 2 LIMIT 5;

UPDATE items SET payload = payload || name || payload WHERE id % 3 = 0;
DELETE FROM items WHERE id % 5 = 0;
SELECT 'after-update', count(*), sum(length(payload)) FROM items;

SELECT 'top3', sum(r), count(*) FROM (
  SELECT row_number() OVER (PARTITION BY grp ORDER BY score DESC, id) AS r FROM items)
WHERE r <= 3;

SELECT 'dup-names', name, count(*) AS c FROM items GROUP BY name HAVING c > 1
ORDER BY c DESC, name LIMIT 5;

SELECT 'json', length(json_group_array(json_object('id', id, 'name', name, 'score', score)))
FROM items WHERE grp < 200;

SELECT 'sorted', sum(length(s)) FROM (SELECT name || payload AS s FROM items ORDER BY s DESC LIMIT 1000);

CREATE TABLE pairs AS
SELECT a.id AS x, b.id AS y FROM items a JOIN items b ON a.grp = b.grp AND b.id = a.id + 997;
SELECT 'pairs', count(*), sum(x % 7), sum(y % 11) FROM pairs;

DROP TABLE pairs;
DELETE FROM items WHERE grp % 2 = 0;
SELECT 'final', count(*), sum(grp), round(sum(score), 2) FROM items;
