-- Run once by the postgis image on an empty volume (docker-entrypoint-initdb.d), after its own
-- scripts made PostGIS: the two roles of issue 16's least privilege. minqing_owner owns the
-- database and runs the migrations (MIGRATION_DATABASE_URL); minqing_app owns nothing and gets
-- its grants from `minqing migrate` (DATABASE_URL). Change both passwords for anything but a demo.
CREATE ROLE minqing_owner LOGIN PASSWORD 'minqing_owner';
CREATE ROLE minqing_app LOGIN PASSWORD 'minqing_app';
ALTER DATABASE minqing OWNER TO minqing_owner;
CREATE EXTENSION IF NOT EXISTS btree_gist;
