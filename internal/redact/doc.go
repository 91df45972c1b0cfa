// Package redact masks patient identifiers — US Social Security numbers, medical record numbers,
// phone numbers, e-mail addresses and configured patterns — in strings and in JSON values at
// configured paths, replacing each with "[REDACTED:<pattern>]".
//
// It is a safety net for text that must leave the gateway's memory (log lines, trace attributes,
// the dashboard), not a de-identification tool: it finds identifiers by their shape, so names,
// dates, addresses and free-text clues pass through, and an identifier in an unusual format can
// too. The rule stays: never log message content; redact what must be shown.
//
// Patterns are Go regular expressions (RE2): matching takes time linear in the input, so no input
// can make a pattern backtrack catastrophically.
package redact
