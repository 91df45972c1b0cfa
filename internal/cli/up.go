package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/agentplane/agentplane/api/v1alpha1"
	"github.com/agentplane/agentplane/internal/gateway"
	"github.com/agentplane/agentplane/internal/manifest"
	"github.com/agentplane/agentplane/internal/run"
	"github.com/agentplane/agentplane/internal/supervisor"
)

type upOptions struct {
	gatewayFlags
	files          []string
	grace          time.Duration
	restartBackoff time.Duration
}

func newUpCommand(streams Streams) *cobra.Command {
	o := upOptions{}
	cmd := &cobra.Command{
		Use:   "up [-f FILE|DIR]...",
		Short: "Run agents on this machine behind an A2A gateway",
		Long: `Run the agents of the given manifests as supervised local processes behind an A2A gateway.

Each replica gets a free port in $PORT and its agent and replica names in $AGENTPLANE_AGENT and
$AGENTPLANE_REPLICA. Replicas that crash are restarted with exponential backoff; their output goes
to DATA_DIR/logs/<agent>/<replica>.log. Ctrl-C stops routing, lets in-flight tasks finish (up to
--drain-timeout), then stops the replicas (SIGTERM, then SIGKILL after --grace). A second Ctrl-C
kills the replicas' process groups and exits at once. On Linux, replicas also die (SIGKILL) when
agentplane up itself is killed.`,
		Example: `  agentplane up                         # the example clinic in examples/clinic
  agentplane up -f my-agent.yaml --listen 127.0.0.1:9090`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.noteChanged(cmd)
			return runUp(cmd.Context(), streams, o)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.files, "file", "f", []string{"examples/clinic"}, "manifest file or directory (repeatable)")
	o.bind(f)
	f.StringVar(&o.dataDir, "data-dir", defaultDataDir(), "directory for logs and state")
	f.StringVar(&o.logLevel, "log-level", "info", "log level of DATA_DIR/agentplane.log: debug, info, warn, error")
	f.StringVar(&o.site, "site", "", "the gateway's own site: its replicas are preferred, other sites used only when they are saturated or down")
	f.DurationVar(&o.grace, "grace", supervisor.DefaultGrace, "on shutdown, how long a replica may take to exit after SIGTERM before SIGKILL")
	f.DurationVar(&o.restartBackoff, "restart-backoff", time.Second, "first restart delay of a crashed replica; doubles up to 5m")
	return cmd
}

func defaultDataDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "agentplane")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "agentplane")
	}
	return ".agentplane"
}

func runUp(ctx context.Context, streams Streams, o upOptions) error {
	agents, err := manifest.Load(o.files...)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("invalid manifests:\n%w", err)}
	}
	sec, err := loadSecurity(o.configFile)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if sec.listen != "" && !o.listenSet {
		o.listen = sec.listen
	}
	if err := checkListen(o.listen, o.insecureRemote || sec.authenticated()); err != nil {
		return &exitError{code: 2, err: err}
	}
	level, err := parseLogLevel(o.logLevel)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	unlock, err := lockDataDir(o.dataDir)
	if err != nil {
		return err
	}
	defer unlock()

	logFile, err := os.OpenFile(filepath.Join(o.dataDir, "agentplane.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	defer logFile.Close()
	logger := newLogger(level, logFile, streams.Err)
	stopDiagnostics, err := o.startDiagnostics(ctx, logger)
	if err != nil {
		return err
	}
	defer stopDiagnostics()

	if err := o.checkJournal(); err != nil {
		return err
	}
	journal, closeJournal, err := o.openJournal(ctx, logger)
	if err != nil {
		return err
	}
	defer closeJournal()

	fl, signer, err := o.joinFleet(ctx, journal, func() (string, error) { return persistentID(o.dataDir, o.site) }, logger)
	if err != nil {
		return err
	}

	var (
		gatewayURL string           // set once the gateway listens, before any replica starts
		gw         *gateway.Gateway // set before the supervisor starts
	)
	sup, err := supervisor.New(agents, supervisor.Options{
		// Its replica events are friendly lines on the console (reportStatus): its warnings
		// go to the log file only.
		DataDir: o.dataDir, Grace: o.grace, Logger: logger.With(logComponent, componentSupervisor), Site: o.site,
		ReplicaEnv: func(agent string, _ int) ([]string, func(), error) {
			return replicaEnv(&sec, gatewayURL, agent)
		},
		Backoff: supervisor.Backoff{Initial: o.restartBackoff},
		// A replica scaled away or removed finishes the tasks it has before it is stopped.
		Drain: drainReplica(func(url string) int { return gw.InFlight(url) }),
	})
	if err != nil {
		return err
	}
	// A second Ctrl-C exits at once: the replicas' process groups go first, not left running.
	defer onForcedExit(ctx, sup.KillAll)()
	admin := newAdminHandler(sup, o.dataDir, func(paths ...string) ([]v1alpha1.Agent, error) {
		if len(paths) == 0 {
			paths = o.files // reload: the manifests up was started with
		}
		return manifest.Load(paths...)
	})
	gopts := o.options(sup, journal, logger)
	gopts.Admin = admin
	scaler := newAutoscaler(sup, func() map[string]gateway.Demand { return gw.Demand() }, logger, streams.Err)
	gopts.ScaleUp = scaler.ScaleUp
	gopts.Fleet, gopts.FleetSigner = fl, signer
	closeSecurity, err := sec.apply(&gopts, o.dataDir, logger, o.maxBodySet)
	if err != nil {
		return err
	}
	sec.keys = gopts.Auth
	defer closeSecurity()
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("gateway cannot listen on %s: %w (is another agentplane running? choose another address with --listen)", o.listen, err)
	}
	gopts.Listener = ln
	gw, err = gateway.New(gopts)
	if err != nil {
		ln.Close()
		return err
	}
	scheme := "http"
	if gopts.TLS != nil {
		scheme = "https"
	}
	url := scheme + "://" + ln.Addr().String()
	gatewayURL = url
	fmt.Fprintf(streams.Err, "agentplane gateway listening on %s\n", url)
	fmt.Fprintf(streams.Err, "%s\n", sec.describe())
	fmt.Fprintf(streams.Err, "data directory %s (replica logs in %s)\n", o.dataDir, filepath.Join(o.dataDir, "logs"))

	// Stopped in the reverse order of Add: the status line, then the gateway, which drains in-flight
	// tasks while the replicas still serve, then the supervisor, which stops the replicas.
	var g run.Group
	g.Add("supervisor", sup)
	g.Add("gateway", run.Func(func(ctx context.Context) error {
		// `agentplane logs -f` streams end when the gateway starts to drain, not at its deadline.
		defer context.AfterFunc(ctx, admin.stopFollowing)()
		return gw.Start(ctx)
	}))
	g.Add("autoscaler", scaler)
	g.Add("status", run.Func(func(ctx context.Context) error {
		reportStatus(ctx, streams.Err, sup, tryCommands(url, sec.authenticates()))
		return nil
	}))
	// Added last, so stopped first: the notice precedes everything the stop does.
	g.Add("stop notice", run.Func(func(stop context.Context) error {
		<-stop.Done()
		if ctx.Err() != nil {
			fmt.Fprintln(streams.Err, "stopping: draining in-flight tasks, then stopping replicas")
		}
		return nil
	}))
	if err := g.Start(ctx); err != nil {
		return err
	}
	fmt.Fprintln(streams.Err, "stopped")
	return nil
}

// checkListen refuses a non-loopback address unless allowed: the gateway has no authentication
// yet, so anything that reaches it could call the agents.
func checkListen(addr string, allowRemote bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", addr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("--listen %q: port must be a number from 0 to 65535", addr)
	}
	if allowRemote {
		return nil
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--listen %q is not a loopback address, and the gateway has no authentication configured: "+
		"anyone who reaches it could call the agents. Listen on 127.0.0.1, or pass --insecure-listen-remote if you mean it", addr)
}

// persistentID is the gateway id `up` keeps in dataDir: made once from the host name, the site
// and a random suffix, then the same at every start, so that a restarted gateway takes back its
// own unfinished tasks at once.
func persistentID(dataDir, site string) (string, error) {
	path := filepath.Join(dataDir, "gateway-id")
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	}
	host, _ := os.Hostname()
	id := strings.Trim(nonID.ReplaceAllString(strings.Join([]string{host, site}, "-"), "-"), "-")
	id = cmp.Or(id, "gateway") + "-" + uuid.NewString()[:8]
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("gateway id: %w", err)
	}
	return id, nil
}

var nonID = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// lockDataDir holds an exclusive lock on the data directory, so that two agentplane processes
// never supervise (or clean up) each other's replicas.
func lockDataDir(dir string) (func(), error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := io.ReadAll(io.LimitReader(f, 32))
		f.Close()
		holder := strings.TrimSpace(string(pid))
		if holder == "" {
			holder = "another process"
		} else {
			holder = "pid " + holder
		}
		return nil, fmt.Errorf("data directory %s is in use by another agentplane (%s); stop it or use --data-dir", dir, holder)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		_ = f.Truncate(0)
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
