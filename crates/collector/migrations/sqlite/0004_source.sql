-- Campaign tag of a result (the web page's ?src=): which banner, poster or
-- partner site brought the test. Counted per tag and period.
ALTER TABLE results ADD COLUMN source TEXT;
CREATE INDEX results_source_day ON results (source, day) WHERE source IS NOT NULL;
