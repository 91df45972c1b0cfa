// Package v1alpha1 is the gateway's configuration file format, apiVersion agentplane.io/v1alpha1,
// kind GatewayConfig: listeners and TLS, authentication (API keys, JWT, mTLS), authorization
// policies, input limits, rate limits, the audit log and PHI redaction.
//
// Load and Decode read it strictly (an unknown field or a duplicate key is an error), then
// SetDefaults fills what was left out and Validate returns every problem, each naming its field.
// The package only describes configuration; internal/auth, internal/audit and internal/redact
// turn it into behaviour, and it never reads the secret files it names.
package v1alpha1
