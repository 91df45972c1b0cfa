// Package cli holds agentplane's commands (cobra), its IO streams and its output printers.
// Data goes to stdout, messages to stderr; spinners and ✓/✗ marks only on a terminal.
package cli
