import { Type, type Static } from '@sinclair/typebox';
import { ref } from './ref.js';

const PackageId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$', examples: ['package_1'] });
const PackageName = Type.String({ minLength: 1, maxLength: 100, examples: ['Starter Pack'] });
const PriceCents = Type.Integer({
  minimum: 50,
  maximum: 99_999_999,
  description: 'Price in the smallest currency unit (Stripe charges at least 50 cents).',
  examples: [1000],
});
const CoinAmount = Type.Integer({ minimum: 1, maximum: 1_000_000_000, examples: [100] });
const CurrencyCode = Type.String({
  pattern: '^[a-z]{3}$',
  description: 'ISO 4217 currency code, lower case as Stripe writes it.',
  examples: ['usd'],
});

export const Package = Type.Object(
  {
    package_id: PackageId,
    name: PackageName,
    price_cents: PriceCents,
    price_dollars: Type.Number({ description: '`price_cents` / 100.', examples: [10] }),
    currency_amount: CoinAmount,
    currency: CurrencyCode,
  },
  { $id: 'Package', title: 'Package', additionalProperties: false },
);
export type Package = Static<typeof Package>;

export const PackageList = Type.Object(
  { packages: Type.Array(ref(Package)) },
  {
    $id: 'PackageList',
    title: 'PackageList',
    additionalProperties: false,
    examples: [
      {
        packages: [
          { package_id: 'package_1', name: 'Starter Pack', price_cents: 1000, price_dollars: 10, currency_amount: 100, currency: 'usd' },
          { package_id: 'package_2', name: 'Popular Pack', price_cents: 2500, price_dollars: 25, currency_amount: 300, currency: 'usd' },
          { package_id: 'package_3', name: 'Premium Pack', price_cents: 5000, price_dollars: 50, currency_amount: 700, currency: 'usd' },
        ],
      },
    ],
  },
);
export type PackageList = Static<typeof PackageList>;

/** The JSON file named by `CATALOG_FILE`: packs the shop sells, replacing the seed's three. */
export const CatalogFile = Type.Object(
  {
    packages: Type.Array(
      Type.Object(
        {
          package_id: PackageId,
          name: PackageName,
          price_cents: PriceCents,
          currency_amount: CoinAmount,
          currency: Type.Optional(CurrencyCode),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 1000 },
    ),
  },
  { additionalProperties: false },
);
export type CatalogFile = Static<typeof CatalogFile>;
