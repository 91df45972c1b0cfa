package simagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2acompat/a2av0"
	"github.com/a2aproject/a2a-go/v2/a2asrv"
)

// HTTP paths served by a simulated agent.
const (
	PathV1      = "/"
	PathV03     = "/v0.3"
	PathStats   = "/simagent/stats"
	PathHealthz = "/healthz"
)

const (
	maxRequestBody    = 16 << 20 // above the gateway's default body limit (8 MiB), so that any task it accepts fits
	readHeaderTimeout = 10 * time.Second
	bodyReadTimeout   = 60 * time.Second
	idleTimeout       = 120 * time.Second
	sseKeepAlive      = 15 * time.Second
	// exitGrace bounds how long Serve waits, after the drain deadline, for
	// interrupted tasks and connections to wind down.
	exitGrace = 5 * time.Second
)

// Run listens on cfg.Listen and serves until ctx is done, then drains and
// returns nil. It returns an error for an invalid config or when it cannot
// listen.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	c, err := cfg.withDefaults(true)
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("simagent: listen on %s: %w", c.Listen, err)
	}
	return Serve(ctx, c, ln, logger)
}

// Serve is Run on an existing listener, which it closes. cfg.Listen is only
// used for the host part of the URLs in the agent card; the port comes from
// ln.
func Serve(ctx context.Context, cfg Config, ln net.Listener, logger *slog.Logger) error {
	c, err := cfg.withDefaults(false)
	if err != nil {
		_ = ln.Close()
		return err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("agent", c.Name, "replica", c.Replica)

	stop := make(chan struct{})
	st := newStats(c.Name, c.Replica)
	exec := newExecutor(c, logger, st, stop)
	if exec.llm != nil {
		st.llm = exec.llm.snapshot
		logger.Info("simagent llm model", "prefillPerToken", c.LLM.PrefillPerToken, "tpot", c.LLM.TPOT,
			"batchSlope", c.LLM.BatchSlope, "cacheSpeedup", c.LLM.CacheSpeedup, "cacheTokens", c.LLM.CacheTokens,
			"speed", exec.llm.model.speed, "outputTokens", c.LLM.OutputTokens.String(), "streamTokens", c.LLM.StreamTokens)
	}
	base := baseURL(c.Listen, ln.Addr())

	handler := newMux(c, base, exec, st, logger)
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}

	logger.Info("simagent listening", "addr", ln.Addr().String(), "url", base,
		"latency", c.Latency.String(), "maxConcurrency", c.MaxConcurrency, "chunks", c.Chunks,
		"failRate", c.FailRate, "hangRate", c.HangRate, "crashAfter", c.CrashAfter)

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		close(stop)
		_ = srv.Close()
		_ = waitIdleFor(st, exitGrace)
		return fmt.Errorf("simagent: serve: %w", err)
	case <-ctx.Done():
	}

	logger.Info("simagent draining", "drainTimeout", c.DrainTimeout, "inFlight", st.snapshot().InFlight)
	drainCtx, cancel := context.WithTimeout(context.Background(), c.DrainTimeout)
	defer cancel()
	// Stop accepting; wait for requests (blocking sends, streams) to finish.
	shutdownErr := srv.Shutdown(drainCtx)
	// Wait for tasks nobody is connected to (non-blocking sends).
	idleErr := st.waitIdle(drainCtx)

	// Past the deadline: end whatever is left (hanging tasks included).
	close(stop)
	if shutdownErr != nil {
		graceCtx, cancelGrace := context.WithTimeout(context.Background(), exitGrace)
		if srv.Shutdown(graceCtx) != nil {
			_ = srv.Close()
		}
		cancelGrace()
	}
	leftover := waitIdleFor(st, exitGrace)
	<-serveErr // http.ErrServerClosed

	s := st.snapshot()
	logger.Info("simagent stopped", "accepted", s.Accepted, "completed", s.Completed, "failed", s.Failed,
		"canceled", s.Canceled, "drainTimedOut", shutdownErr != nil || idleErr != nil, "stuckTasks", leftover != nil)
	return nil
}

func waitIdleFor(st *stats, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return st.waitIdle(ctx)
}

// baseURL is "http://host:port" for the card, taking the port from the bound
// address and the host from listen unless it is empty or unspecified.
func baseURL(listen string, addr net.Addr) string {
	_, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String()
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil || host == "" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// AgentCard returns the card of a simulated agent whose endpoints live under
// base (e.g. "http://127.0.0.1:8080").
func agentCard(c Config, base string) *a2a.AgentCard {
	base = strings.TrimSuffix(base, "/")
	return &a2a.AgentCard{
		Name:        c.Name,
		Description: c.Description,
		Version:     "1.0.0",
		SupportedInterfaces: []*a2a.AgentInterface{
			{URL: base + PathV1, ProtocolBinding: a2a.TransportProtocolJSONRPC, ProtocolVersion: a2a.Version},
			{URL: base + PathV03, ProtocolBinding: a2a.TransportProtocolJSONRPC, ProtocolVersion: a2av0.Version},
		},
		Capabilities:       a2a.AgentCapabilities{Streaming: true, ExtendedAgentCard: true},
		DefaultInputModes:  []string{"text/plain"},
		DefaultOutputModes: []string{"text/plain"},
		Skills: []a2a.AgentSkill{{
			ID:          "simulate",
			Name:        "Simulated processing",
			Description: "Counts the words of the request and answers with a short summary naming the replica, after a simulated service time.",
			Tags:        []string{"simulation", "test"},
			Examples:    []string{"summarize this note"},
		}},
	}
}

func newMux(c Config, base string, exec *executor, st *stats, logger *slog.Logger) http.Handler {
	card := agentCard(c, base)
	// The extended card, for authenticated callers, names one more skill.
	extended := *agentCard(c, base)
	extended.Skills = append(extended.Skills, a2a.AgentSkill{ID: "simulate-detailed", Name: "Detailed simulation",
		Description: "What authenticated callers see: the same simulation, named for them.", Tags: []string{"simulation"}})
	reqHandler := a2asrv.NewHandler(exec,
		a2asrv.WithExtendedAgentCard(&extended),
		a2asrv.WithLogger(logger),
		a2asrv.WithCapabilityChecks(&card.Capabilities),
		a2asrv.WithCallInterceptors(clientInterceptor{}),
	)
	keepAlive := a2asrv.WithTransportKeepAlive(sseKeepAlive)
	v1 := a2asrv.NewJSONRPCHandler(reqHandler, keepAlive)
	v03 := a2av0.NewJSONRPCHandler(reqHandler, keepAlive)

	mux := http.NewServeMux()
	mux.Handle("GET "+a2asrv.WellKnownAgentCardPath, a2asrv.NewStaticAgentCardHandler(card))
	mux.Handle("POST "+PathV1+"{$}", limitBody(v1))
	mux.Handle("POST "+PathV03, limitBody(v03))
	mux.HandleFunc("GET "+PathHealthz, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET "+PathStats, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if err := json.NewEncoder(w).Encode(st.snapshot()); err != nil && !errors.Is(err, http.ErrHandlerTimeout) {
			logger.Debug("simagent stats write failed", "error", err)
		}
	})
	return mux
}

// limitBody reads the (size-limited) request body under a read deadline and
// then clears the deadline, so slow uploads are cut off while long responses
// (blocking sends, SSE streams) are not.
func limitBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
		_ = r.Body.Close()
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "failed to read request body", http.StatusBadRequest)
			return
		}
		_ = rc.SetReadDeadline(time.Time{})
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	})
}
