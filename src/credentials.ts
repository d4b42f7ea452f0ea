// The AWS default credential chain, memoized, behind one small interface.
// fromNodeProviderChain already caches credentials and refreshes them in the
// background during their last five minutes; what it does not do is remember a
// failure, so with no credentials every request would walk the whole chain again
// (IMDS probes cost seconds). We remember a failure briefly and share one attempt.
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@smithy/types';
import { CredentialsUnavailableError } from './errors.js';

export interface CredentialSource {
  /** Current credentials, or CredentialsUnavailableError. */
  get(): Promise<AwsCredentialIdentity>;
}

export interface CredentialOptions {
  profile?: string;
  /** How long a failure is answered from memory before the chain is tried again. */
  failureTtlMs?: number;
  now?: () => number;
}

export function defaultChain(opts: { profile?: string } = {}): AwsCredentialIdentityProvider {
  return fromNodeProviderChain(opts.profile === undefined ? {} : { profile: opts.profile });
}

export function createCredentials(
  provider: AwsCredentialIdentityProvider,
  opts: CredentialOptions = {},
): CredentialSource {
  const failureTtlMs = opts.failureTtlMs ?? 1000;
  const now = opts.now ?? Date.now;
  let failure: { error: CredentialsUnavailableError; until: number } | undefined;
  let pending: Promise<AwsCredentialIdentity> | undefined;

  const attempt = async (): Promise<AwsCredentialIdentity> => {
    // Let this function return its promise before anything settles, so `pending` is
    // assigned before the `finally` below clears it, even if the provider throws at once.
    await undefined;
    try {
      const creds = await provider();
      failure = undefined;
      return creds;
    } catch (cause) {
      const error = new CredentialsUnavailableError('AWS credentials could not be resolved', { cause });
      failure = { error, until: now() + failureTtlMs };
      throw error;
    } finally {
      pending = undefined;
    }
  };

  return {
    get() {
      if (failure !== undefined && now() < failure.until) return Promise.reject(failure.error);
      return (pending ??= attempt());
    },
  };
}

/** Fixed credentials: tests, and operators who pass keys some other way. */
export function staticCredentials(creds: AwsCredentialIdentity): CredentialSource {
  const p = Promise.resolve(creds);
  return { get: () => p };
}
