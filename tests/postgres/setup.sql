-- Test data for tests/tests/postgres.rs, loaded with psql into a fresh cluster.
-- The expected rows in the test are written by hand from these statements.

-- Every type the README's table maps, with NULLs.
CREATE TABLE kiln_types (
  id       integer PRIMARY KEY,
  small    smallint,
  big      bigint,
  price    numeric(10,2),
  ratio    double precision,
  r4       real,
  name     text,
  code     varchar(8),
  flag     boolean,
  day      date,
  ts       timestamp,
  tstz     timestamptz,
  blob     bytea,
  uid      uuid,
  doc      jsonb,
  tags     text[],
  nums     integer[],
  anyn     numeric
);
INSERT INTO kiln_types VALUES
  (1, 7, 9000000000, 12345.67, 0.5, 1.25, 'ann', 'A1', true, '2024-02-29', '2024-03-01 10:00:00.123456', '2024-03-01 10:00:00+02', '\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"k": [1, 2]}', '{x,y}', '{1,NULL,3}', 3.14159),
  (2, -7, -1, -0.05, -1e300, -2.5, 'bö', 'B', false, '1969-12-31', '1999-12-31 23:59:59', '1970-01-01 00:00:00+00', '\x', '00000000-0000-0000-0000-000000000000', '[]', '{}', '{}', -0.000001),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);

-- 10,000 orders for partitioned reads and pushed-down filters; ids 1..10000, some NULL customers.
CREATE TABLE orders (
  id          bigint PRIMARY KEY,
  customer_id integer,
  amount      numeric(12,2) NOT NULL,
  status      text NOT NULL
);
INSERT INTO orders
SELECT g, CASE WHEN g % 97 = 0 THEN NULL ELSE g % 50 END, (g % 1000) / 4.0, CASE WHEN g % 3 = 0 THEN 'open' ELSE 'done' END
FROM generate_series(1, 10000) AS g;
-- Rows whose partition column is NULL must be read too (Spark puts them in the first range).
CREATE TABLE sparse (k integer, v text);
INSERT INTO sparse VALUES (NULL, 'null-key'), (1, 'one'), (50, 'fifty'), (100, 'hundred'), (NULL, 'null-key-2');

-- A sink target with a key and a constraint.
CREATE TABLE totals (
  customer_id integer PRIMARY KEY,
  total       numeric(14,2) NOT NULL CHECK (total >= 0),
  n           integer NOT NULL,
  note        text DEFAULT 'from kiln'
);
INSERT INTO totals VALUES (1, 1.00, 1, 'old'), (999, 9.99, 9, 'untouched');

-- A target whose columns take a cast on the way in.
CREATE TABLE events (id uuid PRIMARY KEY, payload jsonb, at timestamptz);
