import { Type, type Static } from '@sinclair/typebox';
import { UserId } from './ref.js';

const Email = Type.String({ format: 'email', minLength: 3, maxLength: 254, examples: ['customer@example.com'] });
const Name = Type.String({ minLength: 1, maxLength: 200, examples: ['Customer Name'] });
const StripeCustomerId = Type.String({ description: 'The Stripe Customer id.', examples: ['cus_Q1w2E3r4T5y6U7'] });
const IssuedUserId = Type.String({ format: 'uuid', examples: ['3f1c2a9e-5b7d-4c8e-9a01-2b3c4d5e6f70'] });

export const CreateCustomerRequest = Type.Object(
  { email: Email, name: Name },
  {
    $id: 'CreateCustomerRequest',
    title: 'CreateCustomerRequest',
    additionalProperties: false,
    examples: [{ email: 'customer@example.com', name: 'Customer Name' }],
  },
);
export type CreateCustomerRequest = Static<typeof CreateCustomerRequest>;

export const CreateCustomerResponse = Type.Object(
  {
    status: Type.Literal('success'),
    user_id: IssuedUserId,
    stripe_customer_id: StripeCustomerId,
    message: Type.String({ examples: ['Customer created successfully'] }),
  },
  {
    $id: 'CreateCustomerResponse',
    title: 'CreateCustomerResponse',
    additionalProperties: false,
    examples: [
      {
        status: 'success',
        user_id: '3f1c2a9e-5b7d-4c8e-9a01-2b3c4d5e6f70',
        stripe_customer_id: 'cus_Q1w2E3r4T5y6U7',
        message: 'Customer created successfully',
      },
    ],
  },
);
export type CreateCustomerResponse = Static<typeof CreateCustomerResponse>;

export const Customer = Type.Object(
  {
    user_id: IssuedUserId,
    email: Email,
    name: Name,
    currency_balance: Type.Integer({ description: 'Coins the player holds.', examples: [1100] }),
    stripe_customer_id: StripeCustomerId,
    created_at: Type.String({ format: 'date-time', examples: ['2024-01-01T00:00:00.000Z'] }),
  },
  {
    $id: 'Customer',
    title: 'Customer',
    additionalProperties: false,
    examples: [
      {
        user_id: '3f1c2a9e-5b7d-4c8e-9a01-2b3c4d5e6f70',
        email: 'customer@example.com',
        name: 'Customer Name',
        currency_balance: 100,
        stripe_customer_id: 'cus_Q1w2E3r4T5y6U7',
        created_at: '2024-01-01T00:00:00.000Z',
      },
    ],
  },
);
export type Customer = Static<typeof Customer>;

export const UserIdParams = Type.Object({ user_id: UserId }, { additionalProperties: false });
