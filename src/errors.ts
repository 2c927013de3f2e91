/**
 * The one way to fail a request: throw a ProblemError. The error handler turns it into RFC 9457
 * problem details with a stable `code`; `detail` carries the seed's message where the seed has one.
 */
export const problemTypes = {
  validation_error: { status: 400, title: 'Invalid request' },
  unauthorized: { status: 401, title: 'Unauthorized' },
  forbidden: { status: 403, title: 'Forbidden' },
  rate_limited: { status: 429, title: 'Too many requests' },
  customer_not_found: { status: 404, title: 'Customer not found' },
  invalid_package: { status: 400, title: 'Invalid package' },
  no_payment_method: { status: 400, title: 'No payment method' },
  invalid_payment_method: { status: 400, title: 'Invalid payment method' },
  card_declined: { status: 400, title: 'Card declined' },
  insufficient_funds: { status: 400, title: 'Insufficient funds' },
  expired_card: { status: 400, title: 'Card expired' },
  incorrect_cvc: { status: 400, title: 'Incorrect CVC' },
  processing_error: { status: 400, title: 'Card processing error' },
  authentication_required: { status: 402, title: 'Authentication required' },
  not_found: { status: 404, title: 'Not found' },
  payload_too_large: { status: 413, title: 'Payload too large' },
  request_timeout: { status: 408, title: 'Request timeout' },
  headers_too_large: { status: 431, title: 'Request headers too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported media type' },
  bad_request: { status: 400, title: 'Bad request' },
  internal_error: { status: 500, title: 'Internal server error' },
  payment_provider_error: { status: 502, title: 'Payment provider error' },
  payment_pending: { status: 502, title: 'Payment not confirmed yet' },
  payment_provider_refused: { status: 424, title: 'Payment provider refused' },
  service_unavailable: { status: 503, title: 'Service unavailable' },
  authentication_failed: { status: 400, title: 'Authentication failed' },
  checkout_expired: { status: 400, title: 'Checkout expired' },
  invalid_return_url: { status: 400, title: 'Return URL not allowed' },
  async_payment_failed: { status: 400, title: 'Payment failed' },
  insufficient_balance: { status: 400, title: 'Insufficient coin balance' },
  purchase_not_found: { status: 404, title: 'Purchase not found' },
  notification_not_found: { status: 404, title: 'Notification not found' },
  delivery_in_progress: { status: 409, title: 'Delivery in progress' },
  refund_rejected: { status: 409, title: 'Refund refused' },
  invalid_state: { status: 409, title: 'Not possible in this state' },
  idempotency_key_in_use: { status: 409, title: 'Idempotency key in use' },
  idempotency_key_reused: { status: 422, title: 'Idempotency key reused' },
  webhook_rejected: { status: 400, title: 'Webhook rejected' },
  webhooks_not_configured: { status: 503, title: 'Webhooks not configured' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ProblemCode = keyof typeof problemTypes;

export class ProblemError extends Error {
  readonly status: number;
  readonly title: string;

  constructor(
    readonly code: ProblemCode,
    detail: string,
    /** Extra members for the problem document (RFC 9457 extensions), e.g. `client_secret`. */
    readonly extensions: Record<string, unknown> = {},
  ) {
    super(detail);
    this.name = 'ProblemError';
    this.status = problemTypes[code].status;
    this.title = problemTypes[code].title;
  }
}

export const customerNotFound = () => new ProblemError('customer_not_found', 'Customer not found');

/** The RFC 9457 document for a problem, as every error response carries it. */
export function problemDocument(error: ProblemError, requestId: string): Record<string, unknown> {
  return {
    type: `urn:coinshop:problem:${error.code}`,
    title: error.title,
    status: error.status,
    detail: error.message,
    code: error.code,
    request_id: requestId,
    ...error.extensions,
  };
}
