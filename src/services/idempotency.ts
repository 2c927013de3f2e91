import { randomUUID } from 'node:crypto';
import { ProblemError } from '../errors.js';
import type { IdempotencyRow } from '../store/schema.js';
import type { KeyInput, Reservation, Store } from '../store/store.js';

/** An Idempotency-Key a request carries, checked and not yet reserved. */
export interface KeyRequest {
  /** Who is calling: keys are scoped to the caller. */
  scope: string;
  key: string;
  /** Hash of the method, path and canonical body: the same key with another request is refused. */
  hash: string;
  /** A key held longer than this by a request that never finished may be taken over by a retry. */
  lockTimeoutMs: number;
}

/** A request that holds an Idempotency-Key. */
export interface IdempotencyContext {
  scope: string;
  key: string;
  /** The id reserved for what this request creates; a retry that takes the key over gets the same. */
  resourceId: string;
  /** True when an earlier request with this key started and did not finish. */
  resumed: boolean;
  /** Set once the response has been recorded (by the service, in the transaction of its effect). */
  completed: boolean;
}

/** The answer a completed key replays. */
export type KeptAnswer = Pick<IdempotencyRow, 'response_status' | 'response_type' | 'response_body'>;

export type KeyReservation<T> =
  | { kind: 'reserved'; context: IdempotencyContext; /** What `record` wrote with a new key. */ recorded: T | undefined }
  | { kind: 'replay'; answer: KeptAnswer };

/**
 * How a key is reserved in the store, with what a new key's request writes first (`recorded`, or why
 * it recorded nothing, which the caller refuses as usual) committed together with it.
 */
export type KeyReserver<T> = (store: Store, input: KeyInput) => Promise<{ reservation: Reservation; recorded: T | undefined }>;

/** A KeyReserver that runs `record` in the transaction reserving a new key. */
export function recordingWith<T>(record: (tx: Store, resourceId: string) => Promise<T>): KeyReserver<T> {
  return async (store, input) => {
    let recorded: T | undefined;
    const reservation = await store.reserveKey(input, async (tx, resourceId) => {
      recorded = await record(tx, resourceId);
    });
    return { reservation, recorded };
  };
}

const reserveOnly: KeyReserver<never> = async (store, input) => ({ reservation: await store.reserveKey(input), recorded: undefined });

/**
 * Reserves an Idempotency-Key, or answers why it cannot be (422 reused with another request, 409
 * still in use) or what it already answered (a replay). `reserve` may write the request's first
 * change with a new key (see KeyReserver).
 */
export async function reserveKey<T = never>(
  store: Store,
  request: KeyRequest,
  reserve: KeyReserver<T> = reserveOnly,
): Promise<KeyReservation<T>> {
  const { reservation, recorded } = await reserve(store, { ...request, resourceId: randomUUID() });
  switch (reservation.kind) {
    case 'mismatch':
      throw new ProblemError(
        'idempotency_key_reused',
        'This Idempotency-Key was used with a different request; use a new key for a new request',
      );
    case 'in_use':
      throw new ProblemError('idempotency_key_in_use', 'A request with this Idempotency-Key is still being processed; retry later');
    case 'replay':
      return { kind: 'replay', answer: reservation.row };
    case 'reserved':
      return {
        kind: 'reserved',
        context: {
          scope: request.scope,
          key: request.key,
          resourceId: reservation.resourceId,
          resumed: reservation.resumed,
          completed: false,
        },
        recorded,
      };
  }
}

/** A purchase's first step: the key's kept answer to replay, or the purchase begun under a transaction id. */
export type Begun<T> =
  | { kind: 'replay'; answer: KeptAnswer }
  | { kind: 'begun'; idempotency: IdempotencyContext | undefined; transactionId: string; recorded: T | undefined };

/**
 * Begins what a request creates. With an Idempotency-Key: reserves the key and records the request's
 * first write with it (`reserve`), or says what the key already answered; a retry that takes over an
 * unfinished key gets the first request's id. Without a key there is nothing to reserve and nothing
 * is recorded here. A first write that answers why it cannot be made writes nothing, and the caller
 * refuses the request as usual.
 */
export async function beginWithKey<T>(
  store: Store,
  key: KeyRequest | undefined,
  reserve: KeyReserver<T | ProblemError>,
): Promise<Begun<T>> {
  if (!key) return { kind: 'begun', idempotency: undefined, transactionId: randomUUID(), recorded: undefined };
  const reservation = await reserveKey(store, key, reserve);
  if (reservation.kind === 'replay') return reservation;
  const { context, recorded } = reservation;
  return {
    kind: 'begun',
    idempotency: context,
    transactionId: context.resourceId,
    recorded: recorded instanceof ProblemError ? undefined : recorded,
  };
}

/** The media type of a key's kept answer. */
export const answerType = (status: number) => (status >= 400 ? 'application/problem+json' : 'application/json');

/**
 * Records, in the caller's transaction, the response a key will replay: the key completes together
 * with the effect it protects, or not at all.
 */
export async function completeIdempotency(
  tx: Store,
  context: IdempotencyContext | undefined,
  response: { status: number; body: unknown },
): Promise<void> {
  if (!context) return;
  await tx.completeKey(context.scope, context.key, {
    status: response.status,
    type: answerType(response.status),
    body: JSON.stringify(response.body),
  });
  context.completed = true;
}
