import { Type } from '@sinclair/typebox';

export const Health = Type.Object(
  { status: Type.Literal('ok') },
  { $id: 'Health', title: 'Health', additionalProperties: false, examples: [{ status: 'ok' }] },
);

export const Readiness = Type.Object(
  {
    status: Type.Literal('ready'),
    database: Type.Literal('ok'),
    payments: Type.Union([Type.Literal('stripe'), Type.Literal('simulated')], { description: 'Which payments gateway is in use.' }),
  },
  {
    $id: 'Readiness',
    title: 'Readiness',
    additionalProperties: false,
    examples: [{ status: 'ready', database: 'ok', payments: 'stripe' }],
  },
);
