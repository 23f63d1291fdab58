/** Works against the Postgres every machine of this project runs (trust auth); the database is created on first migrate. */
export const DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/coalesce";
