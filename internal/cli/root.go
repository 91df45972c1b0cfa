package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Streams are a command's standard input, output and error.
type Streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// isTerminal reports whether w is a terminal, for spinners and colours.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// SignalContext returns a context cancelled at the first SIGINT or SIGTERM; a second signal
// runs the functions registered with onForcedExit and exits the process at once with status 130.
func SignalContext() (context.Context, context.CancelFunc) {
	fe := &forcedExit{}
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), forcedExitKey{}, fe))
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-ch:
			cancel()
		case <-done:
			return
		}
		select {
		case <-ch:
			fmt.Fprintln(os.Stderr, "second signal: exiting now")
			fe.run()
			os.Exit(130)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		select {
		case <-done:
		default:
			close(done)
		}
		cancel()
	}
}

// forcedExit holds what must be done before the process exits at a second signal: what cannot
// be left to deferred functions, which do not run then.
type forcedExit struct {
	mu    sync.Mutex
	next  int
	hooks map[int]func()
}

type forcedExitKey struct{}

// onForcedExit registers f to run, quickly and without blocking, before a second signal exits
// the process (see SignalContext), and returns a function that unregisters it. Without a
// context from SignalContext it registers nothing.
func onForcedExit(ctx context.Context, f func()) (unregister func()) {
	fe, ok := ctx.Value(forcedExitKey{}).(*forcedExit)
	if !ok {
		return func() {}
	}
	fe.mu.Lock()
	defer fe.mu.Unlock()
	if fe.hooks == nil {
		fe.hooks = map[int]func(){}
	}
	id := fe.next
	fe.next++
	fe.hooks[id] = f
	return func() {
		fe.mu.Lock()
		defer fe.mu.Unlock()
		delete(fe.hooks, id)
	}
}

func (fe *forcedExit) run() {
	fe.mu.Lock()
	defer fe.mu.Unlock()
	for _, f := range fe.hooks {
		f()
	}
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Main runs the agentplane command line and returns the process exit code.
func Main(ctx context.Context, args []string, streams Streams) int {
	root := NewRootCommand(streams)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(streams.Err, "Error:", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// NewRootCommand builds the agentplane command tree.
func NewRootCommand(streams Streams) *cobra.Command {
	root := &cobra.Command{
		Use:           "agentplane",
		Short:         "Run AI agents with fault tolerance and load balancing",
		Long:          "agentplane runs A2A agents behind a gateway that balances tasks by live load, fails them over\nwhen a replica dies, and supervises the replicas: on one machine (agentplane up) or on Kubernetes.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)
	root.AddCommand(
		newUpCommand(streams),
		newGetCommand(streams),
		newApplyCommand(streams),
		newLogsCommand(streams),
		newDescribeCommand(streams),
		newOperatorCommand(streams),
		newGatewayCommand(streams),
		newSimagentCommand(streams),
		newAuditCommand(streams),
		newConfigCommand(streams),
		newVersionCommand(streams),
	)
	return root
}

// Version is set at build time with -ldflags "-X github.com/agentplane/agentplane/internal/cli.Version=...".
var Version = "dev"

func newVersionCommand(streams Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(streams.Out, "agentplane", Version)
			return err
		},
	}
}
