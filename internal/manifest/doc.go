// Package manifest reads Agent manifests from YAML files for embedded mode.
//
// Decoding is strict: an unknown field, a duplicate key or a value of the wrong type is an error,
// and every error names the file, the document within it, the field and why. Decoded agents are
// defaulted and validated with the rules of api/v1alpha1, the same rules the CRD enforces on
// Kubernetes. The package does not run anything.
package manifest
