package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

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
	var (
		keyFile, checkpoints, checkpointKeyFile string
		maxAge                                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "verify FILE|DIR...",
		Short: "Check that audit log files form one unbroken hash chain",
		Long: `Check that audit log files form one unbroken hash chain: no record edited, deleted, inserted or
reordered, and no file missing between the files given. A directory stands for its *.jsonl files.
Files may be given in any order.

Exit status 0 when the chain is intact, 1 naming the first broken record (file:line and what is
wrong), 2 for usage errors. A log written with an HMAC key (audit.hmacKeyFile) can only be checked
with --hmac-key-file; with the key, a chain rewritten without it is caught.

Records cut off the end of the newest file, and newest files deleted, leave no trace in the files
themselves. With --checkpoints (the file of audit.checkpoints), the chain must also reach the
newest signed checkpoint with the same hash, and hold each checkpoint's hash at its seq: what was
cut up to the newest checkpoint is caught, and so is a forged, edited or removed checkpoint.
Records written after the newest checkpoint are not covered; the command prints how many there
are and how old that checkpoint is. --max-checkpoint-age fails when it is older, for checks run
while the gateway writes checkpoints.`,
		Example: `  agentplane audit verify /var/lib/agentplane/audit
  agentplane audit verify --hmac-key-file /etc/agentplane/audit.key audit-*.jsonl
  agentplane audit verify --hmac-key-file /etc/agentplane/audit.key \
      --checkpoints /mnt/audit-checkpoints/checkpoints.jsonl /var/lib/agentplane/audit`,
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
			var (
				rep audit.Report
				cr  *audit.CheckpointReport
			)
			if checkpoints != "" {
				var c audit.CheckpointReport
				rep, c, err = verifyCheckpoints(key, checkpoints, checkpointKeyFile, files)
				cr = &c
			} else {
				if checkpointKeyFile != "" || maxAge != 0 {
					return &exitError{code: 2, err: errors.New("--checkpoint-key and --max-checkpoint-age need --checkpoints")}
				}
				rep, err = audit.VerifyKeyed(key, files...)
			}
			if err != nil {
				var ee *exitError
				if errors.As(err, &ee) {
					return err
				}
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
			if cr == nil {
				return nil
			}
			age := time.Since(cr.Newest.Time).Round(time.Second)
			fmt.Fprintf(streams.Out, "  checkpoints: %d signed, %d in the files given, all matched; newest at seq %d (%s), taken %s ago (%s)\n",
				cr.Checkpoints, cr.Checked, cr.Newest.Seq, cr.Newest.File, age, cr.Newest.Time.Format(time.RFC3339))
			fmt.Fprintf(streams.Out, "  %d record(s) after the newest checkpoint are not covered by it\n", cr.After)
			if maxAge > 0 && age > maxAge {
				return &exitError{code: 1, err: fmt.Errorf("audit log unconfirmed: the newest checkpoint is %s old, more than --max-checkpoint-age %s: "+
					"the gateway stopped taking checkpoints, or the newest were removed", age, maxAge)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyFile, "hmac-key-file", "", "file holding the HMAC key the log was written with")
	f.StringVar(&checkpoints, "checkpoints", "", "checkpoints file (audit.checkpoints.path) the chain must agree with")
	f.StringVar(&checkpointKeyFile, "checkpoint-key", "", "file holding the key the checkpoints are signed with (audit.checkpoints.keyFile); default the --hmac-key-file key")
	f.DurationVar(&maxAge, "max-checkpoint-age", 0, "fail when the newest checkpoint is older than this (0: do not check)")
	return cmd
}

// verifyCheckpoints reads and checks the checkpoints file, then the chain against it.
func verifyCheckpoints(key []byte, path, keyFile string, files []string) (audit.Report, audit.CheckpointReport, error) {
	cpKey := key
	if keyFile != "" {
		var err error
		if cpKey, err = audit.LoadKey(keyFile, ""); err != nil {
			return audit.Report{}, audit.CheckpointReport{}, &exitError{code: 2, err: fmt.Errorf("--checkpoint-key: %w", err)}
		}
	}
	if cpKey == nil {
		return audit.Report{}, audit.CheckpointReport{}, &exitError{code: 2, err: errors.New("checkpoints are signed: give --checkpoint-key, or --hmac-key-file when they are signed with the log's key")}
	}
	cps, err := audit.ReadCheckpoints(path, cpKey)
	if err != nil {
		return audit.Report{}, audit.CheckpointReport{}, err
	}
	return audit.VerifyCheckpoints(key, cps, files...)
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
