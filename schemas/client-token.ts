import { Type, type Static } from '@sinclair/typebox';
import { UserId } from './ref.js';

export const ClientTokenRequest = Type.Object(
  { user_id: UserId },
  {
    $id: 'ClientTokenRequest',
    title: 'ClientTokenRequest',
    additionalProperties: false,
    examples: [{ user_id: '3f1c2a9e-5b7d-4c8e-9a01-2b3c4d5e6f70' }],
  },
);
export type ClientTokenRequest = Static<typeof ClientTokenRequest>;

const EXAMPLE_TOKEN =
  'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6IjBhMWIyYzNkNGU1ZjZhN2IifQ.' +
  'eyJzY29wZSI6ImdldEN1c3RvbWVyIiwic3ViIjoiM2YxYzJhOWUtNWI3ZC00YzhlLTlhMDEtMmIzYzRkNWU2ZjcwIn0.' +
  'c2lnbmF0dXJlLW9mLXRoZS1leGFtcGxlLXRva2VuLW9ubHk';

export const ClientToken = Type.Object(
  {
    token: Type.String({
      description:
        'An HS256 JWT for this player only (`sub`), to send as `Authorization: Bearer <token>`. Hand it to the ' +
        'player’s browser or app; never hand out an API key.',
      examples: [EXAMPLE_TOKEN],
    }),
    expires_at: Type.String({
      format: 'date-time',
      description: 'When it stops working (CLIENT_TOKEN_TTL_SECONDS after it was made).',
      examples: ['2026-01-01T12:15:00.000Z'],
    }),
  },
  {
    $id: 'ClientToken',
    title: 'ClientToken',
    additionalProperties: false,
    examples: [{ token: EXAMPLE_TOKEN, expires_at: '2026-01-01T12:15:00.000Z' }],
  },
);
export type ClientToken = Static<typeof ClientToken>;
