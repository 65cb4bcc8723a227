SELECT *, median(score) OVER w AS med, stddev_samp(score) OVER w AS sd, count(score) OVER w AS n FROM 'data/tr_scores.parquet' WINDOW w AS (PARTITION BY grp)
