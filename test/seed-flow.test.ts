import t from 'tap';
import { buildTestApp } from './support/helper.js';
import { seedFlow } from './support/seed-flow.js';

t.test('the seed user story, on the simulated gateway', async (t) => {
  const app = await buildTestApp(t);
  await seedFlow(t, app, /^cus_sim_[0-9a-f]{24}$/);
});
