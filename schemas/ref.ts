import { Type, type Static, type TSchema } from '@sinclair/typebox';

/**
 * A `$ref` to a schema registered with `app.addSchema`, typed as the schema it points at.
 * Routes use it so every shape appears once, under its own name, in the OpenAPI document.
 */
export function ref<T extends TSchema>(schema: T) {
  if (!schema.$id) throw new Error('ref() needs a schema with an $id');
  return Type.Unsafe<Static<T>>(Type.Ref(schema.$id));
}

/** Identifiers a caller sends back to us: bounded, printable, no surprises. */
/** A package from the catalog, named by a purchase request: the price is the catalog's, never the client's. */
export const PackageId = Type.String({
  minLength: 1,
  maxLength: 64,
  description: 'A `package_id` from listPackages. The price comes from the catalog, never from the client.',
  examples: ['package_1'],
});

export const UserId = Type.String({
  minLength: 1,
  maxLength: 64,
  description: 'The `user_id` returned by createCustomer (a UUID). Any other value is simply not found (404).',
  examples: ['3f1c2a9e-5b7d-4c8e-9a01-2b3c4d5e6f70'],
});
