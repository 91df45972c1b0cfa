package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// testExe is this test binary, which the tests run as their agent.
var testExe string

// TestMain runs the helper agent instead of the tests when SUPERVISOR_TEST_AGENT is set.
func TestMain(m *testing.M) {
	if mode := os.Getenv("SUPERVISOR_TEST_AGENT"); mode != "" {
		os.Exit(helperAgent(mode))
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testExe = exe
	os.Exit(m.Run())
}

// helperAgent is a tiny agent. It serves GET /.well-known/agent-card.json and /livez on
// 127.0.0.1:$PORT, and GET /slow?ms=N, which sends its headers at once and its body "done"
// N milliseconds later, in one of these modes:
//
//	ok          serve; on SIGTERM finish the requests in flight (up to 5s) and exit 0
//	crash       exit 3 at once
//	slowstart   serve only after 1s
//	ignoreterm  serve and ignore SIGTERM, so that only SIGKILL stops it
//	unready     the card answers 503 (/livez still 200)
//	family      like ok, but first start a child that sleeps, and print its pid
//	sleeper     block until killed (the child of family)
//	noport      write to stderr that it listens on 8080, and never listen (it ignores $PORT)
func helperAgent(mode string) int {
	fmt.Printf("helper agent %s-%s mode %s pid %d version %q\n", os.Getenv("AGENTPLANE_AGENT"), os.Getenv("AGENTPLANE_REPLICA"), mode, os.Getpid(), os.Getenv("HELPER_VERSION"))
	term := make(chan os.Signal, 1)
	switch mode {
	case "crash":
		fmt.Fprintln(os.Stderr, "helper agent crashing")
		return 3
	case "sleeper":
		select {}
	case "noport":
		for i := range 12 {
			fmt.Fprintf(os.Stderr, "noport line %d\n", i)
		}
		fmt.Fprintln(os.Stderr, "listening on 127.0.0.1:8080")
		select {}
	case "ignoreterm":
		signal.Ignore(syscall.SIGTERM)
	default:
		signal.Notify(term, syscall.SIGTERM)
	}
	if mode == "family" {
		child := exec.Command(os.Args[0])
		child.Env = append(os.Environ(), "SUPERVISOR_TEST_AGENT=sleeper")
		child.Stdout, child.Stderr = os.Stdout, os.Stderr
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("child pid %d\n", child.Process.Pid)
	}
	if dir := os.Getenv("AGENTPLANE_MEMORY_DIR"); dir != "" { // a stateful agent remembers its starts
		f, err := os.OpenFile(filepath.Join(dir, "starts"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintf(f, "pid %d\n", os.Getpid())
		f.Close()
	}
	if mode == "slowstart" {
		time.Sleep(time.Second)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/agent-card.json", func(w http.ResponseWriter, r *http.Request) {
		if mode == "unready" {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"name": os.Getenv("AGENTPLANE_AGENT")})
	})
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprint(w, "done")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	<-term
	fmt.Println("helper agent draining")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	fmt.Println("helper agent drained")
	return 0
}
