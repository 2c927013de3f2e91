/**
 * compose.yaml cannot be run here (no Docker engine), so its safety is read from the file: what it
 * publishes, how long a stopping replica gets, and how the load balancer finds the replicas.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';
import { parse } from 'yaml';
import { loadConfig } from '../src/config.js';
import { projectFile } from './support/project.js';

interface Service {
  image?: string;
  ports?: string[];
  environment?: Record<string, string>;
  stop_grace_period?: string;
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
}
const compose = parse(readFileSync(projectFile('compose.yaml'), 'utf8')) as {
  services: Record<string, Service>;
  configs: { nginx: { content: string } };
};
const { api, lb } = compose.services as { api: Service; lb: Service };

/** compose's value with its `${VAR:-default}` substitutions given no variables. */
const byDefault = (value: string) => value.replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1');

t.test('by default it publishes the shop on this machine only (127.0.0.1), not on every interface', async (t) => {
  t.same(lb.ports?.map(byDefault), ['127.0.0.1:8000:80']);
  t.same(
    Object.keys(compose.services).filter((name) => compose.services[name]?.ports !== undefined),
    ['lb'],
    'nothing else is published',
  );
});

t.test('a stopping replica gets longer than SHUTDOWN_GRACE_MS before it is killed', async (t) => {
  const grace = Number(byDefault(api.environment?.['SHUTDOWN_GRACE_MS'] ?? '90000'));
  const period = /^(\d+)s$/.exec(api.stop_grace_period ?? '')?.[1];
  t.ok(period, `stop_grace_period is in seconds (${api.stop_grace_period})`);
  t.ok(Number(period) * 1000 > grace, `${period} s > ${grace} ms`);
});

t.test('the load balancer waits for healthy replicas and re-resolves their addresses', async (t) => {
  t.same(lb.depends_on, { api: { condition: 'service_healthy' } });
  t.match(api.healthcheck?.test.join(' '), /\/health/);
  const nginx = compose.configs.nginx.content;
  t.match(nginx, /resolver 127\.0\.0\.11 valid=\d+s/, "Docker's DNS, asked again every few seconds");
  t.match(nginx, /server api:8000 resolve;/, 'the upstream follows replicas as they come and go');
  t.match(nginx, /zone coinshop \d+k;/, '(resolve needs a shared zone)');
  const version = /^nginx:(\d+)\.(\d+)/.exec(lb.image ?? '');
  t.ok(version && Number(version[1]) * 100 + Number(version[2]) >= 128, `nginx ${lb.image} has "resolve" in open source (1.27.3+)`);
});

t.test("the api's settings are valid, in development and with production's secrets", async (t) => {
  const env = Object.fromEntries(Object.entries(api.environment ?? {}).map(([name, value]) => [name, byDefault(value)]));
  t.equal(loadConfig(env).NODE_ENV, 'development');
  const secrets = {
    API_KEYS: 'k'.repeat(32),
    STRIPE_SECRET_KEY: 'sk_live_x',
    STRIPE_WEBHOOK_SECRET: 'whsec_x',
    CLIENT_TOKEN_SECRETS: 's'.repeat(32),
  };
  t.equal(loadConfig({ ...env, NODE_ENV: 'production', ...secrets }).NODE_ENV, 'production');
});
