/** Where the suite finds the services its PostgreSQL pass needs (CI points them at a throwaway database). */
export const TEST_PG_URL = process.env['TEST_PG_URL'] ?? 'postgres://postgres@127.0.0.1:5432/test';
export const TEST_REDIS_URL = process.env['TEST_REDIS_URL'] ?? 'redis://127.0.0.1:6379';
