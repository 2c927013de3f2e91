import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { decodeProtectedHeader, errors as joseErrors, jwtVerify, SignJWT } from 'jose';

/** `iss` and `aud` of every client token: coinshop signs them for itself. */
export const CLIENT_TOKEN_ISSUER = 'coinshop';
export const CLIENT_TOKEN_AUDIENCE = 'coinshop';

/**
 * The operations a client token may call, for its own player only (its `scope` claim lists them).
 * `spendCurrency` is listed only while CLIENT_TOKENS_MAY_SPEND is on. `simulateAuthentication` is the
 * simulated customer confirming 3-D Secure for their own purchase, as the real one would in Stripe.js.
 */
export const PLAYER_OPERATIONS = [
  'getCustomer',
  'attachPaymentMethod',
  'purchaseCurrency',
  'createCheckoutSession',
  'listTransactions',
  'getPurchase',
  'listPackages',
  'simulateAuthentication',
] as const;
export const SPEND_OPERATION = 'spendCurrency';

/** How far ahead of this server's clock a token's `iat` may be (another replica's clock). */
export const CLOCK_SKEW_SECONDS = 60;

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
/** Whether a bearer credential is shaped like a JWT (API keys are checked first, so a key with dots is still a key). */
export const looksLikeToken = (credential: string) => JWT_SHAPE.test(credential);

export type TokenCheck = { ok: true; userId: string; scope: ReadonlySet<string> } | { ok: false; detail: string };

/** The non-secret id (`kid`) of a signing secret, so a token names the secret that verifies it. */
export const keyIdOf = (secret: string) => createHash('sha256').update(`coinshop client token key\n${secret}`).digest('hex').slice(0, 16);

/**
 * Short-lived HS256 JWTs that let a browser or app act for one player without the server API key.
 * The first secret signs; every listed secret verifies (rotation: add the new one first, remove the
 * old one once its last tokens have expired).
 */
export class ClientTokens {
  private readonly keys: { kid: string; key: Uint8Array }[];

  constructor(
    secrets: readonly string[],
    readonly ttlSeconds: number,
    readonly maySpend: boolean,
  ) {
    if (secrets.length === 0) throw new Error('ClientTokens needs at least one secret');
    this.keys = secrets.map((secret) => ({ kid: keyIdOf(secret), key: new TextEncoder().encode(secret) }));
  }

  /** A random secret for a development server without CLIENT_TOKEN_SECRETS. */
  static randomSecret(): string {
    return randomBytes(32).toString('base64url');
  }

  get scope(): string[] {
    return this.maySpend ? [...PLAYER_OPERATIONS, SPEND_OPERATION] : [...PLAYER_OPERATIONS];
  }

  async mint(userId: string, now = Date.now()): Promise<{ token: string; expires_at: string }> {
    const signer = this.keys[0];
    if (!signer) throw new Error('no signing key');
    const issuedAt = Math.floor(now / 1000);
    const expiresAt = issuedAt + this.ttlSeconds;
    const token = await new SignJWT({ scope: this.scope.join(' ') })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: signer.kid })
      .setSubject(userId)
      .setIssuer(CLIENT_TOKEN_ISSUER)
      .setAudience(CLIENT_TOKEN_AUDIENCE)
      .setIssuedAt(issuedAt)
      .setExpirationTime(expiresAt)
      .setJti(randomUUID())
      .sign(signer.key);
    return { token, expires_at: new Date(expiresAt * 1000).toISOString() };
  }

  /**
   * Checks signature, `kid`, `alg`, `iss`, `aud` (coinshop alone), `exp`, and that `sub`, `scope` and
   * `jti` are there; and holds the token to what mint() gives, so a leaked secret's forgeries or a
   * token minted by another tool cannot outlive the TTL: `iat` not ahead of now (beyond clock skew),
   * `exp - iat` within the TTL. Never throws.
   */
  async verify(token: string, now = Date.now()): Promise<TokenCheck> {
    let kid: unknown;
    try {
      kid = decodeProtectedHeader(token).kid;
    } catch {
      return { ok: false, detail: 'Invalid client token: malformed' };
    }
    const key = this.keys.find((k) => k.kid === kid);
    if (key === undefined) return { ok: false, detail: 'Invalid client token: not signed with a current key' };
    try {
      const { payload } = await jwtVerify(token, key.key, {
        algorithms: ['HS256'],
        issuer: CLIENT_TOKEN_ISSUER,
        audience: CLIENT_TOKEN_AUDIENCE,
        requiredClaims: ['sub', 'exp', 'iat', 'jti', 'scope'],
        currentDate: new Date(now),
      });
      const { sub, scope, iat, exp, aud } = payload;
      if (typeof sub !== 'string' || sub.length === 0 || typeof scope !== 'string')
        return { ok: false, detail: 'Invalid client token: malformed claims' };
      if (aud !== CLIENT_TOKEN_AUDIENCE) return { ok: false, detail: 'Invalid client token: aud claim rejected' };
      if (typeof iat !== 'number' || iat > Math.floor(now / 1000) + CLOCK_SKEW_SECONDS)
        return { ok: false, detail: 'Invalid client token: iat claim rejected' };
      if (typeof exp !== 'number' || exp - iat > this.ttlSeconds)
        return { ok: false, detail: `Invalid client token: lives longer than ${this.ttlSeconds} seconds` };
      return { ok: true, userId: sub, scope: new Set(scope.split(' ')) };
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) return { ok: false, detail: 'Invalid client token: expired' };
      if (err instanceof joseErrors.JWTClaimValidationFailed)
        return { ok: false, detail: `Invalid client token: ${err.claim} claim rejected` };
      return { ok: false, detail: 'Invalid client token: signature or format rejected' };
    }
  }
}
