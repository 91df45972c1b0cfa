package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/agentplane/agentplane/internal/audit"
)

func newAuditCommand(streams Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Work with the gateway's audit log",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newAuditVerifyCommand(streams))
	return cmd
}

func newAuditVerifyCommand(streams Streams) *cobra.Command {
	var keyFile string
	cmd := &cobra.Command{
		Use:   "verify FILE|DIR...",
		Short: "Check that audit log files form one unbroken hash chain",
		Long: `Check that audit log files form one unbroken hash chain: no record edited, deleted, inserted or
reordered, and no file missing between the files given. A directory stands for its *.jsonl files.
Files may be given in any order.

Exit status 0 when the chain is intact, 1 naming the first broken record (file:line and what is
wrong), 2 for usage errors. A log written with an HMAC key (audit.hmacKeyFile) can only be checked
with --hmac-key-file; with the key, a chain rewritten without it is caught.

Records cut off the end of the newest file leave no trace in the files themselves: compare the
printed head (last seq and hash) with a copy kept elsewhere.`,
		Example: `  agentplane audit verify /var/lib/agentplane/audit
  agentplane audit verify --hmac-key-file /etc/agentplane/audit.key audit-*.jsonl`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := auditFiles(args)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			var key []byte
			if keyFile != "" {
				if key, err = audit.LoadKey(keyFile, ""); err != nil {
					return &exitError{code: 2, err: err}
				}
			}
			rep, err := audit.VerifyKeyed(key, files...)
			if err != nil {
				if errors.Is(err, audit.ErrBroken) {
					err = fmt.Errorf("audit log broken: %w", err)
				}
				return &exitError{code: 1, err: err}
			}
			mode := "SHA-256 (unkeyed)"
			switch {
			case rep.Keyed:
				mode = "HMAC-SHA-256"
			case key != nil:
				mode = "HMAC-SHA-256 after unkeyed files"
			}
			mark := ""
			if isTerminal(streams.Out) {
				mark = "✓ "
			}
			fmt.Fprintf(streams.Out, mark+"audit log intact: %d file(s), %d records, seq %d to %d, %s\n",
				len(rep.Files), rep.Records, rep.FirstSeq, rep.LastSeq, mode)
			if rep.StartsAfter != "" {
				fmt.Fprintf(streams.Out, "  starts after %s, which was not given; records before seq %d were not checked\n", rep.StartsAfter, rep.FirstSeq)
			}
			fmt.Fprintf(streams.Out, "  head: seq %d hash %s\n", rep.LastSeq, rep.LastHash)
			return nil
		},
	}
	cmd.Flags().StringVar(&keyFile, "hmac-key-file", "", "file holding the HMAC key the log was written with")
	return cmd
}

// auditFiles expands directories to their *.jsonl files.
func auditFiles(args []string) ([]string, error) {
	var files []string
	for _, a := range args {
		fi, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			files = append(files, a)
			continue
		}
		m, err := filepath.Glob(filepath.Join(a, "*.jsonl"))
		if err != nil {
			return nil, err
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("%s: no *.jsonl files in this directory", a)
		}
		files = append(files, m...)
	}
	return files, nil
}
