/** The database engines coinshop runs on: SQLite (embedded, the default) or PostgreSQL (several replicas). */
export type Engine = 'sqlite' | 'postgres';
