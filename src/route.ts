// The HTTP surface on the socket: the invoke path grammar, Lambda's function-name
// rules and the --allow-function globs. Pure functions; nothing here does I/O.
import {
  FunctionNotAllowedError,
  InvalidFunctionNameError,
  InvalidQualifierError,
  MethodNotAllowedError,
  NotFoundError,
} from './errors.js';

const INVOKE_PREFIX = '/2015-03-31/functions/';
const INVOKE_SUFFIX = '/invocations';

/** A function reference as Lambda's Invoke API accepts it, split into its parts. */
export interface FunctionRef {
  /** What the client sent, decoded: name, name:qualifier, partial or full ARN. */
  readonly id: string;
  /** The bare function name; what --allow-function globs match. */
  readonly name: string;
  readonly qualifier?: string;
  readonly account?: string;
  readonly region?: string;
}

export type Route =
  | {
      readonly kind: 'invoke';
      readonly fn: FunctionRef;
      readonly qualifier?: string;
      /** Path Lambda receives, without query. */
      readonly upstreamPath: string;
      /** Path and query as sent on the wire. */
      readonly upstreamTarget: string;
    }
  | { readonly kind: 'health' };

// Lambda's Invoke FunctionName pattern, made stricter where its looseness would let
// odd strings through: a full ARN must name the account and `function:`; no dots
// (CreateFunction never allows them, and `..` must never reach a path).
// Regions, as --region takes them: two to four letters, words, a number (`us-west-2`,
// `us-gov-west-1`, `eusc-de-east-1`, `us-isob-east-1`).
const FUNCTION_RE =
  /^(?:arn:aws[a-zA-Z-]*:lambda:([a-z]{2,4}(?:-[a-z]+)+-\d{1,2}):(?=\d{12}:function:))?(?:(\d{12}):function:)?([a-zA-Z0-9_-]{1,64})(?::(\$LATEST|[a-zA-Z0-9_-]{1,128}))?$/;
const QUALIFIER_RE = /^(?:\$LATEST|[a-zA-Z0-9_-]{1,128})$/;
// Lambda's documented maximum length of FunctionName for Invoke.
const MAX_FUNCTION_ID = 170;

export function parseFunctionRef(id: string): FunctionRef {
  if (id.length === 0 || id.length > MAX_FUNCTION_ID) {
    throw new InvalidFunctionNameError(`function name must be 1 to ${MAX_FUNCTION_ID} characters`);
  }
  const m = FUNCTION_RE.exec(id);
  if (m === null) {
    throw new InvalidFunctionNameError(
      'function name must be a name, name:qualifier, a partial ARN (123456789012:function:name) or a full ARN',
    );
  }
  const [, region, account, name, qualifier] = m;
  return { id, name: name!, qualifier, account, region };
}

export function parseQualifier(value: string): string {
  if (!QUALIFIER_RE.test(value)) {
    throw new InvalidQualifierError('Qualifier must be $LATEST, a version or an alias (1 to 128 of [A-Za-z0-9_-])');
  }
  return value;
}

/**
 * The path Lambda receives: the function id percent-encoded once (`:` as `%3A`).
 * The signer encodes it a second time for the canonical URI, as SigV4 requires for
 * every service but S3; the wire keeps the single encoding.
 */
export function invokePath(fn: FunctionRef): string {
  return INVOKE_PREFIX + encodeURIComponent(fn.id) + INVOKE_SUFFIX;
}

/** Where an invocation of `fn` goes: the path to sign and the target to send. */
export function invokeTarget(fn: FunctionRef, qualifier?: string): { upstreamPath: string; upstreamTarget: string } {
  const upstreamPath = invokePath(fn);
  const upstreamTarget = qualifier === undefined ? upstreamPath : `${upstreamPath}?Qualifier=${encodeURIComponent(qualifier)}`;
  return { upstreamPath, upstreamTarget };
}

/** Turns a method and request target into a Route, or throws the matching 4xx. */
export function route(method: string, target: string): Route {
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? '' : target.slice(q + 1);

  if (path === '/healthz') {
    if (method !== 'GET' && method !== 'HEAD') throw new MethodNotAllowedError('use GET for /healthz', 'GET, HEAD');
    return { kind: 'health' };
  }
  if (!path.startsWith(INVOKE_PREFIX) || !path.endsWith(INVOKE_SUFFIX)) {
    throw new NotFoundError('not found: lambda-sign serves POST /2015-03-31/functions/{name}/invocations and GET /healthz');
  }
  const raw = path.slice(INVOKE_PREFIX.length, path.length - INVOKE_SUFFIX.length);
  if (raw.length === 0 || raw.includes('/')) {
    throw new NotFoundError('not found: lambda-sign serves POST /2015-03-31/functions/{name}/invocations and GET /healthz');
  }
  if (method !== 'POST') throw new MethodNotAllowedError('invocations take POST', 'POST');

  let id: string;
  try {
    id = decodeURIComponent(raw);
  } catch {
    throw new InvalidFunctionNameError('function name is not valid percent-encoding');
  }
  const fn = parseFunctionRef(id);
  const qualifier = parseQuery(query);
  return { kind: 'invoke', fn, qualifier, ...invokeTarget(fn, qualifier) };
}

// Only Qualifier means anything to Invoke; other parameters (cache busters and the
// like) are not forwarded, so they can never change what is signed.
function parseQuery(query: string): string | undefined {
  if (query === '') return undefined;
  let qualifier: string | undefined;
  for (const part of query.split('&')) {
    const eq = part.indexOf('=');
    const key = eq === -1 ? part : part.slice(0, eq);
    if (key !== 'Qualifier') continue;
    if (qualifier !== undefined) throw new InvalidQualifierError('Qualifier given more than once');
    let value: string;
    try {
      value = decodeURIComponent((eq === -1 ? '' : part.slice(eq + 1)).replace(/\+/g, ' '));
    } catch {
      throw new InvalidQualifierError('Qualifier is not valid percent-encoding');
    }
    qualifier = parseQualifier(value);
  }
  return qualifier;
}

/** Compiles --allow-function globs (`*`, `?`) into one predicate over bare names. */
export function compileAllowlist(globs: readonly string[]): ((name: string) => boolean) | undefined {
  if (globs.length === 0) return undefined;
  const source = globs
    .map((g) => g.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^:]*').replace(/\?/g, '[^:]'))
    .join('|');
  const re = new RegExp(`^(?:${source})$`);
  return (name) => re.test(name);
}

export function checkAllowed(allowed: ((name: string) => boolean) | undefined, fn: FunctionRef): void {
  if (allowed !== undefined && !allowed(fn.name)) {
    throw new FunctionNotAllowedError(`function ${fn.name} is not in --allow-function`);
  }
}
