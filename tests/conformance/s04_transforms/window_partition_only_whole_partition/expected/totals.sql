SELECT *, sum(score) OVER w AS total, count(*) OVER w AS n, max(score) OVER w AS best FROM 'data/tr_scores.parquet' WINDOW w AS (PARTITION BY grp)
