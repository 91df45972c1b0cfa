package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	configv1 "github.com/agentplane/agentplane/api/config/v1alpha1"
)

// newConfigCommand is `agentplane config`: the file of named gateways (contexts) the commands
// that talk to a gateway read, as kubectl's kubeconfig.
func newConfigCommand(streams Streams) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Name gateways and their credentials (contexts), and choose the current one",
		Long: `Keep named gateways, each with its URL and credentials (a context), in a config file:
--agentplane-config, else $AGENTPLANE_CONFIG, else ~/.config/agentplane/config.yaml. get, apply,
logs and describe use the current context unless --context, --gateway or the environment say
otherwise: a flag wins over the environment (AGENTPLANE_GATEWAY, AGENTPLANE_TOKEN), which wins
over the context, which wins over the default http://127.0.0.1:8080. A context's credentials are
sent only to its own gateway.

The file is written with mode 0600. Prefer --token-file to --token: a token given inline is kept
in the file itself, and config view never shows it.`,
		Example: `  agentplane config set-context clinic --gateway https://gw.clinic.example:8443 \
      --token-file ~/.config/agentplane/clinic.token --ca-cert ~/clinic-ca.pem
  agentplane config use-context clinic
  agentplane config get-contexts
  agentplane get agents`,
		Args: cobra.NoArgs,
	}
	cmd.PersistentFlags().StringVar(&path, "agentplane-config", "", "config file (default: env "+envConfig+", or "+defaultConfigHint+")")
	file := func() string { return configPath(path, os.Getenv) }
	cmd.AddCommand(
		newConfigUseContextCommand(streams, file),
		newConfigGetContextsCommand(streams, file),
		newConfigSetContextCommand(streams, file),
		newConfigDeleteContextCommand(streams, file),
		newConfigCurrentContextCommand(streams, file),
		newConfigViewCommand(streams, file),
	)
	return cmd
}

func newConfigUseContextCommand(streams Streams, file func() string) *cobra.Command {
	return &cobra.Command{
		Use:   "use-context NAME",
		Short: "Make a context the current one",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			path := file()
			c, err := loadClientConfig(path)
			if err != nil {
				return err
			}
			if _, ok := c.Context(args[0]); !ok {
				return &exitError{code: 2, err: fmt.Errorf("no context %q in %s (agentplane config get-contexts lists them)", args[0], path)}
			}
			c.CurrentContext = args[0]
			if err := saveClientConfig(path, c); err != nil {
				return err
			}
			_, err = fmt.Fprintf(streams.Out, "Switched to context %q.\n", args[0])
			return err
		},
	}
}

func newConfigCurrentContextCommand(streams Streams, file func() string) *cobra.Command {
	return &cobra.Command{
		Use:   "current-context",
		Short: "Print the name of the current context",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			path := file()
			c, err := loadClientConfig(path)
			if err != nil {
				return err
			}
			if c.CurrentContext == "" {
				return fmt.Errorf("no current context in %s (agentplane config use-context NAME sets one)", path)
			}
			_, err = fmt.Fprintln(streams.Out, c.CurrentContext)
			return err
		},
	}
}

func newConfigGetContextsCommand(streams Streams, file func() string) *cobra.Command {
	return &cobra.Command{
		Use:   "get-contexts",
		Short: "List the contexts: name, gateway and the kind of credentials (never their value)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			path := file()
			c, err := loadClientConfig(path)
			if err != nil {
				return err
			}
			if len(c.Contexts) == 0 {
				fmt.Fprintf(streams.Err, "no contexts in %s (agentplane config set-context NAME --gateway URL adds one)\n", path)
				return nil
			}
			tw := tabwriter.NewWriter(streams.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CURRENT\tNAME\tGATEWAY\tCREDENTIALS")
			for _, x := range c.Contexts {
				cur := ""
				if x.Name == c.CurrentContext {
					cur = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cur, x.Name, x.Gateway, credentialKinds(x))
			}
			return tw.Flush()
		},
	}
}

// credentialKinds says what credentials a context holds, not what they are.
func credentialKinds(x configv1.ClientContext) string {
	var kinds []string
	switch {
	case x.TokenFile != "":
		kinds = append(kinds, "token file")
	case x.Token != "":
		kinds = append(kinds, "token")
	}
	if x.ClientCert != "" {
		kinds = append(kinds, "client certificate")
	}
	if x.CACert != "" {
		kinds = append(kinds, "own CA")
	}
	if len(kinds) == 0 {
		return "none"
	}
	return strings.Join(kinds, ", ")
}

func newConfigSetContextCommand(streams Streams, file func() string) *cobra.Command {
	var (
		x   configv1.ClientContext
		use bool
	)
	cmd := &cobra.Command{
		Use:   "set-context NAME [--gateway URL] [--token-file F | --token T] [--client-cert F --client-key F] [--ca-cert F]",
		Short: "Add a context, or change the settings given of an existing one",
		Long: `Add a context, or change the settings given of an existing one (the others stay). Files are
kept as absolute paths. An empty value removes a setting, as --token-file "".`,
		Example: `  agentplane config set-context local --gateway http://127.0.0.1:8080 --token-file examples/secure/keys/ops.key
  agentplane config set-context clinic --gateway https://gw.clinic.example:8443 --client-cert me.pem --client-key me-key.pem --use`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := file()
			c, err := loadClientConfig(path)
			if err != nil {
				return err
			}
			cur, existed := c.Context(args[0])
			if !existed {
				c.Contexts = append(c.Contexts, configv1.ClientContext{Name: args[0]})
				cur = &c.Contexts[len(c.Contexts)-1]
			}
			f := cmd.Flags()
			set := func(flag string, dst *string, v string, isPath bool) error {
				if !f.Changed(flag) {
					return nil
				}
				if isPath && v != "" {
					abs, err := filepath.Abs(v)
					if err != nil {
						return err
					}
					v = abs
				}
				*dst = v
				return nil
			}
			for _, s := range []struct {
				flag   string
				dst    *string
				v      string
				isPath bool
			}{
				{"gateway", &cur.Gateway, x.Gateway, false},
				{"token", &cur.Token, x.Token, false},
				{"token-file", &cur.TokenFile, x.TokenFile, true},
				{"client-cert", &cur.ClientCert, x.ClientCert, true},
				{"client-key", &cur.ClientKey, x.ClientKey, true},
				{"ca-cert", &cur.CACert, x.CACert, true},
			} {
				if err := set(s.flag, s.dst, s.v, s.isPath); err != nil {
					return err
				}
			}
			// The one given last wins between an inline token and a token file.
			if f.Changed("token-file") && x.TokenFile != "" {
				cur.Token = ""
			} else if f.Changed("token") && x.Token != "" {
				cur.TokenFile = ""
			}
			if use {
				c.CurrentContext = args[0]
			}
			if err := saveClientConfig(path, c); err != nil {
				return &exitError{code: 2, err: fmt.Errorf("context %q: %w", args[0], err)}
			}
			what := "created"
			if existed {
				what = "modified"
			}
			fmt.Fprintf(streams.Out, "Context %q %s in %s.\n", args[0], what, path)
			if f.Changed("token") && x.Token != "" {
				fmt.Fprintln(streams.Err, "Warning: the token is kept in the config file itself (mode 0600); --token-file keeps it out of it")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&x.Gateway, "gateway", "", "the gateway's base URL, http or https")
	f.StringVar(&x.Token, "token", "", "an API key or bearer JWT, kept in the config file (prefer --token-file)")
	f.StringVar(&x.TokenFile, "token-file", "", "a file holding the API key or bearer JWT, read at each use")
	f.StringVar(&x.ClientCert, "client-cert", "", "PEM client certificate for mutual TLS")
	f.StringVar(&x.ClientKey, "client-key", "", "PEM private key of --client-cert")
	f.StringVar(&x.CACert, "ca-cert", "", "PEM CA bundle the gateway's certificate must chain to")
	f.BoolVar(&use, "use", false, "also make it the current context")
	return cmd
}

func newConfigDeleteContextCommand(streams Streams, file func() string) *cobra.Command {
	return &cobra.Command{
		Use:   "delete-context NAME",
		Short: "Remove a context (its token file stays)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			path := file()
			c, err := loadClientConfig(path)
			if err != nil {
				return err
			}
			if _, ok := c.Context(args[0]); !ok {
				return &exitError{code: 2, err: fmt.Errorf("no context %q in %s", args[0], path)}
			}
			var keep []configv1.ClientContext
			for _, x := range c.Contexts {
				if x.Name != args[0] {
					keep = append(keep, x)
				}
			}
			c.Contexts = keep
			if c.CurrentContext == args[0] {
				c.CurrentContext = ""
				fmt.Fprintf(streams.Err, "Warning: %q was the current context; there is none now\n", args[0])
			}
			if err := saveClientConfig(path, c); err != nil {
				return err
			}
			_, err = fmt.Fprintf(streams.Out, "Context %q deleted from %s.\n", args[0], path)
			return err
		},
	}
}

func newConfigViewCommand(streams Streams, file func() string) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "view",
		Short: "Print the config file, with inline tokens redacted",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			switch output {
			case "yaml", "json":
			default:
				return &exitError{code: 2, err: fmt.Errorf("-o %q: must be yaml or json", output)}
			}
			c, err := loadClientConfig(file())
			if err != nil {
				return err
			}
			return printData(streams.Out, output, redacted(c))
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	return cmd
}
