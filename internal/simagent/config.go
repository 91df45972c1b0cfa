package simagent

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"time"

	"github.com/spf13/pflag"
)

// Environment variables consulted for defaults.
const (
	EnvPort    = "PORT"
	EnvAgent   = "AGENTPLANE_AGENT"
	EnvReplica = "AGENTPLANE_REPLICA"
	// EnvListenHost is the address to listen on with $PORT: the operator sets 0.0.0.0, since a
	// pod is reached at its pod IP; embedded mode sets 127.0.0.1, so that replicas are reached
	// only through the gateway. Unset: 127.0.0.1.
	EnvListenHost = "AGENTPLANE_LISTEN_HOST"
)

const (
	defaultName         = "simagent"
	defaultReplica      = "0"
	defaultChunks       = 1
	defaultDrainTimeout = 30 * time.Second
	maxChunks           = 10000
)

// Config of a simulated agent. Zero values mean defaults.
type Config struct {
	Listen         string        // address to listen on; default "127.0.0.1:$PORT" (env PORT), error if neither
	Name           string        // agent name in the card; default env AGENTPLANE_AGENT, else "simagent"
	Replica        string        // replica id; default env AGENTPLANE_REPLICA, else "0"
	Description    string        // card description; a default is generated when empty
	Latency        Latency       // per-task service time; nil means none
	MaxConcurrency int           // tasks worked on at once; beyond it tasks wait (queue); 0 = unlimited
	Chunks         int           // artifact chunks; default 1
	FailRate       float64       // fraction [0,1] of tasks that end in state "failed"
	HangRate       float64       // fraction [0,1] of tasks that never finish (until the client goes away / shutdown)
	CrashAfter     int           // if >0: the task arriving after CrashAfter accepted tasks exits the process (code 3)
	Seed           int64         // RNG seed; 0 = random
	DrainTimeout   time.Duration // on shutdown: how long in-flight tasks may still run; default 30s
	LLM            LLMConfig     // the LLM-shaped model instead of Latency, when LLM.Enabled

	// exit terminates the process on a simulated crash; os.Exit when nil.
	// Tests inject a recorder.
	exit func(code int)
}

// BindFlags registers the configuration flags on fs, using the current field
// values as defaults.
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", c.Listen, "address to listen on (default $AGENTPLANE_LISTEN_HOST:$PORT; the host defaults to 127.0.0.1)")
	fs.StringVar(&c.Name, "name", c.Name, "agent name in the agent card (default $AGENTPLANE_AGENT, else \"simagent\")")
	fs.StringVar(&c.Replica, "replica", c.Replica, "replica id (default $AGENTPLANE_REPLICA, else \"0\")")
	fs.StringVar(&c.Description, "description", c.Description, "agent description in the agent card")
	fs.Var(latencyValue{&c.Latency}, "latency", "per-task service time: \"0\", a fixed duration like \"200ms\", or \"lognormal:MEDIAN,P99\" e.g. \"lognormal:2s,20s\"")
	fs.IntVar(&c.MaxConcurrency, "max-concurrency", c.MaxConcurrency, "tasks worked on at once; more tasks queue (0 = unlimited)")
	fs.IntVar(&c.Chunks, "chunks", c.Chunks, "number of artifact chunks streamed per task (default 1)")
	fs.Float64Var(&c.FailRate, "fail-rate", c.FailRate, "fraction [0,1] of tasks that end in state failed")
	fs.Float64Var(&c.HangRate, "hang-rate", c.HangRate, "fraction [0,1] of tasks that never finish until the client goes away")
	fs.IntVar(&c.CrashAfter, "crash-after", c.CrashAfter, "if >0, exit abruptly (code 3) when the task after this many accepted tasks arrives")
	fs.Int64Var(&c.Seed, "seed", c.Seed, "random seed (0 = random)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "on shutdown, how long in-flight tasks may still run (default 30s)")
	c.bindLLMFlags(fs)
}

// withDefaults returns a copy of c with defaults applied. listenRequired
// reports whether an empty Listen (and no $PORT) is an error.
func (c Config) withDefaults(listenRequired bool) (Config, error) {
	if c.Listen == "" {
		if port := os.Getenv(EnvPort); port != "" {
			host := os.Getenv(EnvListenHost)
			if host == "" {
				host = "127.0.0.1"
			}
			c.Listen = net.JoinHostPort(host, port)
		} else if listenRequired {
			return c, fmt.Errorf("simagent: no listen address: set --listen or $%s", EnvPort)
		}
	}
	if c.Name == "" {
		c.Name = os.Getenv(EnvAgent)
	}
	if c.Name == "" {
		c.Name = defaultName
	}
	if c.Replica == "" {
		c.Replica = os.Getenv(EnvReplica)
	}
	if c.Replica == "" {
		c.Replica = defaultReplica
	}
	if c.Description == "" {
		c.Description = "Simulated A2A agent (agentplane simagent): answers every task with a short summary after a simulated service time."
	}
	if c.Latency == nil {
		c.Latency = fixedLatency(0)
	}
	if c.Chunks == 0 {
		c.Chunks = defaultChunks
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = defaultDrainTimeout
	}
	if c.LLM.Enabled {
		c.LLM = c.LLM.withDefaults()
	}
	if c.exit == nil {
		c.exit = os.Exit
	}
	return c, c.validate()
}

func (c Config) validate() error {
	var errs []error
	rate := func(name string, v float64) {
		if math.IsNaN(v) || v < 0 || v > 1 {
			errs = append(errs, fmt.Errorf("%s must be in [0,1], got %v", name, v))
		}
	}
	rate("fail-rate", c.FailRate)
	rate("hang-rate", c.HangRate)
	if c.FailRate+c.HangRate > 1+1e-9 {
		errs = append(errs, fmt.Errorf("fail-rate + hang-rate must be <= 1, got %v + %v", c.FailRate, c.HangRate))
	}
	if c.MaxConcurrency < 0 {
		errs = append(errs, fmt.Errorf("max-concurrency must be >= 0 (0 = unlimited), got %d", c.MaxConcurrency))
	}
	if c.Chunks < 1 || c.Chunks > maxChunks {
		errs = append(errs, fmt.Errorf("chunks must be in [1,%d], got %d", maxChunks, c.Chunks))
	}
	if c.CrashAfter < 0 {
		errs = append(errs, fmt.Errorf("crash-after must be >= 0, got %d", c.CrashAfter))
	}
	if c.DrainTimeout < 0 {
		errs = append(errs, fmt.Errorf("drain-timeout must be >= 0, got %v", c.DrainTimeout))
	}
	if c.LLM.Enabled {
		errs = append(errs, c.LLM.validate()...)
		if c.Latency != nil && c.Latency.String() != "0" {
			errs = append(errs, fmt.Errorf("latency %s cannot be combined with llm: the model decides the service time", c.Latency))
		}
		if c.Chunks != defaultChunks {
			errs = append(errs, fmt.Errorf("chunks %d cannot be combined with llm: use llm-stream-tokens", c.Chunks))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("simagent: invalid config: %w", errors.Join(errs...))
	}
	return nil
}

// who is the "<name>-<replica>" identity reported in answers and metadata.
func (c Config) who() string { return c.Name + "-" + c.Replica }
