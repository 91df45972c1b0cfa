// Package auth decides who a caller is and what it may do at the gateway: authentication
// (Authenticator: API keys, JWT bearer tokens, verified client certificates, and keys issued to
// agent replicas), authorization (Authorizer: policies from subjects to agents and skills, the
// highest priority a subject may ask for, and which tasks a subject may see), and rate limits
// (RateLimiter: token buckets per subject × agent for requests and for model tokens).
//
// Everything is deny-unless-allowed: no credential, an unknown or expired one, or a request no
// policy covers is refused. Errors are typed (ErrNoCredentials, ErrInvalidCredentials,
// ErrForbidden, ErrRateLimited); HTTPStatus and ClientMessage say what to answer, and an error's
// Error text is safe to log: it never contains a token or key.
//
// The package does not serve HTTP or write audit records; the gateway composes it.
package auth
