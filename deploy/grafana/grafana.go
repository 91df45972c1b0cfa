// Package grafana holds agentplane's Grafana dashboard, agentplane.json, built on the metrics of
// internal/telemetry (its test checks every query against them). Import it into Grafana
// (Dashboards → New → Import) and pick a Prometheus data source that scrapes the gateway's
// /metrics.
package grafana

import _ "embed"

// Dashboard is agentplane.json.
//
//go:embed agentplane.json
var Dashboard []byte
