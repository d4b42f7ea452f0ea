// The AWS default credential chain behind one small interface, with the refresh policy
// in our hands so that it can be observed:
// - credentials in hand are returned at once, with no call into the chain;
// - in their last five minutes (the AWS SDKs' window) one background refresh starts,
//   and the current ones keep serving until it lands; a failed refresh is reported
//   and tried again after a pause, never failing a request while credentials are valid;
// - with no valid credentials, callers share one lookup, and a failure is remembered
//   briefly so a burst of requests does not walk the chain (IMDS probes take seconds)
//   a thousand times.
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import { CredentialsUnavailableError } from './errors.js';

export interface CredentialSource {
  /** Current credentials, or CredentialsUnavailableError. */
  get(): Promise<AwsCredentialIdentity>;
  /**
   * The credentials in hand, without a promise, when they are valid; undefined when only
   * get() can tell (a lookup is needed, or has failed). Lets the signer sign synchronously.
   */
  peek?(): AwsCredentialIdentity | undefined;
}

export interface CredentialOptions {
  /** How long a failed lookup is answered from memory before the chain is tried again. */
  failureTtlMs?: number;
  /** Refresh when less than this is left (default 5 minutes, as the AWS SDKs). */
  refreshWindowMs?: number;
  /** Pause after a failed background refresh before the next attempt. */
  refreshRetryMs?: number;
  now?: () => number;
  /** Every lookup's outcome: a first resolution or a refresh, ok or not. */
  onRefresh?: (ok: boolean, err?: unknown) => void;
  /** A lookup that takes longer fails (a hung credential_process or SSO call must be a 503). */
  lookupTimeoutMs?: number;
  /**
   * A new provider, for the lookups after one timed out. The SDK's chain makes a forced
   * refresh that starts while another runs wait on that one, so the old provider would tie
   * every later lookup to the hung call until it ends, minutes later on a dead connection.
   */
  renew?: () => AwsCredentialIdentityProvider;
}

type Provider = (opts?: { forceRefresh?: boolean }) => Promise<AwsCredentialIdentity>;

/**
 * The chain, told our region as an SDK client tells it (its "parent" config): without it,
 * web identity's STS call goes to AWS_REGION or else us-east-1, where a role of aws-cn or
 * aws-us-gov cannot be assumed. Not as clientConfig.region, which would also override what
 * the profile says: SSO's sso_region (IAM Identity Center answers in its home region only)
 * and an assume-role profile's region.
 */
export function defaultChain(opts: { profile?: string; region?: string } = {}): AwsCredentialIdentityProvider {
  return fromNodeProviderChain({
    ...(opts.profile === undefined ? {} : { profile: opts.profile }),
    ...(opts.region === undefined ? {} : { parentClientConfig: { region: opts.region } }),
  });
}

/** Lookups given up on that may still be running (a process, a socket) before we stop renewing. */
const MAX_ABANDONED = 2;

export function createCredentials(first: AwsCredentialIdentityProvider, opts: CredentialOptions = {}): CredentialSource {
  const timeoutMs = opts.lookupTimeoutMs ?? 10_000;
  let provider = first;
  let abandoned = 0;
  const lookup = async (o: { forceRefresh?: boolean }): Promise<AwsCredentialIdentity> => {
    let timer: NodeJS.Timeout | undefined;
    const used = provider;
    // async: a provider that throws synchronously becomes a rejection, not an escape
    const call = (async () => (used as Provider)(o))();
    try {
      return await Promise.race([
        call,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            // The call goes on (the SDK cannot cancel a credential_process or an HTTP call):
            // a new chain for the next lookup, while few enough such calls are left running
            // that a source that keeps hanging cannot pile up processes or sockets.
            abandoned++;
            const settled = (): void => void abandoned--;
            call.then(settled, settled);
            if (opts.renew !== undefined && provider === used && abandoned <= MAX_ABANDONED) provider = opts.renew();
            reject(new Error(`credential lookup took more than ${timeoutMs} ms`));
          }, timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  };
  const failureTtlMs = opts.failureTtlMs ?? 1000;
  const windowMs = opts.refreshWindowMs ?? 5 * 60_000;
  const retryMs = opts.refreshRetryMs ?? 10_000;
  const now = opts.now ?? Date.now;
  let current: { creds: AwsCredentialIdentity; promise: Promise<AwsCredentialIdentity>; expires: number } | undefined;
  let failure: { error: CredentialsUnavailableError; until: number } | undefined;
  let pending: Promise<AwsCredentialIdentity> | undefined;
  let refreshing = false;
  let nextRefreshAt = 0;

  const adopt = (creds: AwsCredentialIdentity): AwsCredentialIdentity => {
    current = { creds, promise: Promise.resolve(creds), expires: creds.expiration?.getTime() ?? Infinity };
    failure = undefined;
    opts.onRefresh?.(true);
    return creds;
  };

  // forceRefresh: the chain memoizes too; we decide when to refresh, so bypass its cache.
  const fetch = async (): Promise<AwsCredentialIdentity> => {
    // Return the promise before anything settles, so `pending` is assigned before the
    // `finally` clears it, even when a provider throws synchronously.
    await undefined;
    try {
      return adopt(await lookup({ forceRefresh: true }));
    } catch (cause) {
      const error = new CredentialsUnavailableError('AWS credentials could not be resolved', { cause });
      failure = { error, until: now() + failureTtlMs };
      opts.onRefresh?.(false, cause);
      throw error;
    } finally {
      pending = undefined;
    }
  };

  const refreshInBackground = (): void => {
    if (refreshing || now() < nextRefreshAt) return;
    refreshing = true;
    (async () => lookup({ forceRefresh: true }))().then(
      (creds) => {
        refreshing = false;
        adopt(creds);
      },
      (err: unknown) => {
        refreshing = false;
        nextRefreshAt = now() + retryMs;
        opts.onRefresh?.(false, err);
      },
    );
  };

  /** The current credentials while they are valid, starting a refresh in their last window. */
  const inHand = (): typeof current => {
    if (current === undefined) return undefined;
    const left = current.expires - now();
    if (left <= 0) return undefined;
    if (left <= windowMs) refreshInBackground();
    return current;
  };

  return {
    get() {
      const c = inHand();
      if (c !== undefined) return c.promise;
      if (failure !== undefined && now() < failure.until) return Promise.reject(failure.error);
      return (pending ??= fetch());
    },
    peek() {
      return inHand()?.creds;
    },
  };
}

/** Fixed credentials: tests, and operators who pass keys some other way. */
export function staticCredentials(creds: AwsCredentialIdentity): CredentialSource {
  const p = Promise.resolve(creds);
  return { get: () => p, peek: () => creds };
}
