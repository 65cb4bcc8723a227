WITH people AS (
  SELECT * FROM read_csv('data/src_people.csv', header = true,
    columns = {'id': 'BIGINT', 'name': 'VARCHAR', 'age': 'INTEGER', 'city': 'VARCHAR',
               'joined': 'DATE', 'score': 'DOUBLE', 'active': 'BOOLEAN'})
),
cities(city_key, country) AS (
  VALUES ('paris', 'FR'), ('oslo', 'NO'), ('lima', 'PE'), ('berlin', 'DE')
)
SELECT c.country AS country,
       count(p.id) AS people,
       avg(p.score) AS avg_score,
       max(p.age) AS max_age
FROM people p LEFT JOIN cities c ON lower(p.city) = c.city_key
GROUP BY c.country
ORDER BY country NULLS FIRST
