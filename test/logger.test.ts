import type { FastifyBaseLogger } from 'fastify';
import { pino } from 'pino';
import t from 'tap';
import { buildApp } from '../src/app.js';
import { loggerOptions, RequestLogger } from '../src/logger.js';
import { LogDestination } from '../src/log-destination.js';
import { testConfig } from './support/helper.js';

/** A pino logger writing its lines into `lines`, whose children are counted in `made`. */
function countingLogger(level = 'info') {
  const lines: Record<string, unknown>[] = [];
  const base = pino({ level }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  const made: object[] = [];
  const parent: FastifyBaseLogger = {
    level: base.level,
    fatal: base.fatal.bind(base),
    error: base.error.bind(base),
    warn: base.warn.bind(base),
    info: base.info.bind(base),
    debug: base.debug.bind(base),
    trace: base.trace.bind(base),
    silent: base.silent.bind(base),
    child: (bindings, options) => {
      made.push(bindings);
      return base.child(bindings, options);
    },
  };
  return { parent, lines, made };
}

t.test('a request logger makes its child only when something logs through it, and then only once', async (t) => {
  const { parent, lines, made } = countingLogger();
  const logger = new RequestLogger(parent, { reqId: 'req-1' }, {});
  t.equal(logger.level, 'info', "until then its level is the parent's");
  t.same(made, [], 'no child made for a request that logs nothing');

  logger.warn({ userId: 'u1' }, 'first');
  logger.info('second %s', 'line');
  logger.debug('below the level');
  t.same(made, [{ reqId: 'req-1' }], 'one child, bound to the request id');
  t.match(lines, [
    { level: 40, reqId: 'req-1', userId: 'u1', msg: 'first' },
    { level: 30, reqId: 'req-1', msg: 'second line' },
  ]);
  t.equal(lines.length, 2, 'the debug line is dropped at level info');

  logger.level = 'debug';
  logger.debug('now kept');
  t.match(lines.at(-1), { level: 20, reqId: 'req-1', msg: 'now kept' });
  logger.level = 'trace';
  logger.trace('every level');
  logger.fatal('goes through');
  logger.silent('but silent');
  t.match(lines.slice(-2), [
    { level: 10, reqId: 'req-1', msg: 'every level' },
    { level: 60, reqId: 'req-1', msg: 'goes through' },
  ]);
  logger.child({ step: 'stripe' }).error('from a grandchild');
  t.match(lines.at(-1), { level: 50, reqId: 'req-1', step: 'stripe', msg: 'from a grandchild' });
  t.equal(made.length, 1);
});

t.test("a request logger's own level option is honoured before and after it makes its child", async (t) => {
  const { parent, lines } = countingLogger();
  const logger = new RequestLogger(parent, { reqId: 'req-2' }, { level: 'error' });
  t.equal(logger.level, 'error');
  logger.warn('dropped');
  logger.error('kept');
  t.equal(logger.level, 'error');
  t.match(lines, [{ level: 50, reqId: 'req-2', msg: 'kept' }]);
  t.equal(lines.length, 1);
});

t.test("in the app, what a request logs carries its id and is redacted as the app's logger is", async (t) => {
  const lines: Record<string, unknown>[] = [];
  const destination = new LogDestination(1);
  const options = loggerOptions({ LOG_LEVEL: 'info' }, destination);
  const app = await buildApp({
    config: await testConfig(),
    logger: { ...(options as object), stream: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) } },
  });
  t.teardown(() => app.close());
  app.get('/test/logs', (request) => {
    request.log.warn({ payment_method_id: 'pm_card_visa', card: { paymentMethodId: 'pm_card_visa' }, note: 'kept' }, 'from the handler');
    return {};
  });
  const response = await app.inject({ method: 'GET', url: '/test/logs', headers: { 'x-request-id': 'trace-abc' } });
  t.equal(response.statusCode, 200);
  const fromHandler = lines.find((line) => line['msg'] === 'from the handler');
  t.match(fromHandler, { reqId: 'trace-abc', note: 'kept', payment_method_id: '[redacted]', card: { paymentMethodId: '[redacted]' } });
  t.match(
    lines.find((line) => line['msg'] === 'request'),
    { reqId: 'trace-abc', url: '/test/logs', statusCode: 200 },
    'and the request still has its one line',
  );
});
