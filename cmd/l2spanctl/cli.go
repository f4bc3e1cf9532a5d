package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/internal/tlsfiles"
)

const (
	defaultBrainURL = "http://127.0.0.1:9696"
	envBrainURL     = "L2SPAN_BRAIN_URL"
	envToken        = "L2SPAN_TOKEN"
)

// env is what every command runs with: where to write, how to format, and
// (lazily, so that help works without a brain) the API client.
type env struct {
	ctx       context.Context
	out, errw io.Writer
	format    string

	brainURL  string
	token     string
	tokenFile string
	caFile    string
	timeout   time.Duration
	client    *api.Client
}

// api returns the brain client, building it on first use.
func (e *env) api() (*api.Client, error) {
	if e.client != nil {
		return e.client, nil
	}
	token := e.token
	if e.tokenFile != "" {
		b, err := os.ReadFile(e.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read token file: %w", err)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return nil, fmt.Errorf("token file %s is empty", e.tokenFile)
		}
	}
	opts := []api.Option{api.WithTimeout(e.timeout)}
	if token != "" {
		opts = append(opts, api.WithToken(token))
	}
	if e.caFile != "" {
		pool, err := tlsfiles.CAPool(e.caFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, api.WithTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	}
	c, err := api.NewClient(e.brainURL, opts...)
	if err != nil {
		return nil, err
	}
	e.client = c
	return c, nil
}

// runFunc runs a command with its positional arguments; its flags are bound
// by the setup that returned it.
type runFunc func(e *env, args []string) error

// withAPI adapts a command body that talks to the brain: it gets the client.
func withAPI(fn func(e *env, c *api.Client, args []string) error) runFunc {
	return func(e *env, args []string) error {
		c, err := e.api()
		if err != nil {
			return err
		}
		return fn(e, c, args)
	}
}

// command is one leaf command, e.g. "pod create".
type command struct {
	name    string
	args    string // synopsis after the name: positional args and required flags
	summary string
	// minArgs and maxArgs bound the positional arguments (maxArgs < 0: any).
	minArgs, maxArgs int
	// setup declares the command's flags on fs and returns its runner.
	setup func(fs *flag.FlagSet) runFunc
}

// group is a top-level command: either a noun with subcommands (pod, network,
// ...) or a leaf of its own (state).
type group struct {
	name    string
	summary string
	cmds    []*command
	leaf    *command
}

func (g *group) find(name string) *command {
	for _, c := range g.cmds {
		if c.name == name {
			return c
		}
	}
	return nil
}

// usageError is a mistake in the command line: exit 2 with the usage.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

func isHelp(s string) bool { return s == "help" || s == "-h" || s == "-help" || s == "--help" }

// run is l2spanctl: it returns the process exit code (0 ok, 1 failed, 2 usage).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, out: stdout, errw: stderr}
	gfs := globalFlags(e)
	if err := gfs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			mainUsage(stdout)
			return 0
		}
		return failUsage(stderr, err, mainUsage)
	}
	if err := e.checkGlobal(gfs); err != nil {
		return failUsage(stderr, err, mainUsage)
	}
	rest := gfs.Args()
	if len(rest) == 0 {
		return failUsage(stderr, usagef("missing command"), mainUsage)
	}
	name, rest := rest[0], rest[1:]
	if isHelp(name) {
		return helpCommand(rest, stdout, stderr)
	}
	if name == "completion" {
		if len(rest) != 1 || rest[0] != "bash" {
			return failUsage(stderr, usagef("usage: l2spanctl completion bash"), mainUsage)
		}
		if err := completionScript(stdout); err != nil {
			fmt.Fprintln(stderr, "error:", err)
			return 1
		}
		return 0
	}
	g := findGroup(name)
	if g == nil {
		return failUsage(stderr, usagef("unknown command %q", name), mainUsage)
	}
	if g.leaf != nil {
		return runLeaf(e, g.name, g.leaf, rest)
	}
	if len(rest) == 0 {
		return failUsage(stderr, usagef("%s: missing subcommand", g.name), g.usage)
	}
	sub, rest := rest[0], rest[1:]
	if isHelp(sub) {
		return helpCommand(append([]string{g.name}, rest...), stdout, stderr)
	}
	c := g.find(sub)
	if c == nil {
		return failUsage(stderr, usagef("unknown command %q", g.name+" "+sub), g.usage)
	}
	return runLeaf(e, g.name+" "+c.name, c, rest)
}

func globalFlags(e *env) *flag.FlagSet {
	fs := flag.NewFlagSet("l2spanctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	brainURL := os.Getenv(envBrainURL)
	if brainURL == "" {
		brainURL = defaultBrainURL
	}
	fs.StringVar(&e.brainURL, "brain", brainURL, "brain API `URL` (env "+envBrainURL+")")
	fs.StringVar(&e.token, "token", os.Getenv(envToken), "bearer `TOKEN` for the brain (env "+envToken+")")
	fs.StringVar(&e.tokenFile, "token-file", "", "read the bearer token from `FILE`")
	fs.StringVar(&e.caFile, "ca-file", os.Getenv("L2SPAN_CA_FILE"), "CA bundle that signs an https brain's certificate (env L2SPAN_CA_FILE)")
	fs.StringVar(&e.format, "o", "table", "output `FORMAT`: table or json")
	fs.DurationVar(&e.timeout, "timeout", 30*time.Second, "`DURATION` of each API request (watches are not bounded)")
	return fs
}

func (e *env) checkGlobal(fs *flag.FlagSet) error {
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if explicit["token"] && explicit["token-file"] {
		return usagef("--token and --token-file are mutually exclusive")
	}
	if explicit["token-file"] {
		e.token = "" // a file named on the command line beats the environment
	}
	if e.timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	return checkFormat(e.format)
}

func checkFormat(f string) error {
	if f != "table" && f != "json" {
		return usagef("-o %q: want table or json", f)
	}
	return nil
}

// runLeaf parses a leaf command's flags (anywhere among its arguments) and
// runs it.
func runLeaf(e *env, path string, c *command, args []string) int {
	fs, runner := c.flagSet(path, &e.format)
	usage := func(w io.Writer) { c.usage(w, path) }
	if len(args) > 0 && args[0] == "help" {
		usage(e.out)
		return 0
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(e.out)
			return 0
		}
		return failUsage(e.errw, err, usage)
	}
	if err := checkFormat(e.format); err != nil {
		return failUsage(e.errw, err, usage)
	}
	switch {
	case len(pos) < c.minArgs:
		return failUsage(e.errw, usagef("%s: missing argument (want %s)", path, c.args), usage)
	case c.maxArgs >= 0 && len(pos) > c.maxArgs:
		return failUsage(e.errw, usagef("%s: unexpected argument %q", path, pos[c.maxArgs]), usage)
	}
	err = runner(e, pos)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return failUsage(e.errw, err, usage)
	default:
		printError(e.errw, e.brainURL, err)
		return 1
	}
}

func (c *command) flagSet(path string, format *string) (*flag.FlagSet, runFunc) {
	fs := flag.NewFlagSet("l2spanctl "+path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	runner := c.setup(fs)
	if format != nil {
		fs.StringVar(format, "o", *format, "output `FORMAT`: table or json")
	} else {
		fs.String("o", "table", "output `FORMAT`: table or json")
	}
	return fs, runner
}

// parseInterspersed parses flags that may come before, between or after the
// positional arguments; "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// required reports a usage error unless every named flag was set.
func required(fs *flag.FlagSet, names ...string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var missing []string
	for _, n := range names {
		if !set[n] {
			missing = append(missing, "--"+n)
		}
	}
	if len(missing) > 0 {
		return usagef("missing required flag %s", strings.Join(missing, ", "))
	}
	return nil
}

func failUsage(w io.Writer, err error, usage func(io.Writer)) int {
	fmt.Fprintf(w, "error: %v\n\n", err)
	usage(w)
	return 2
}

// printError writes err as "error: <message> (field: <field>)".
func printError(w io.Writer, brainURL string, err error) {
	var ae *api.Error
	var ue *url.Error
	switch {
	case errors.As(err, &ae):
		msg := ae.Message
		if msg == "" {
			msg = ae.Code
		}
		if ae.Field != "" {
			fmt.Fprintf(w, "error: %s (field: %s)\n", msg, ae.Field)
		} else {
			fmt.Fprintf(w, "error: %s\n", msg)
		}
	case errors.As(err, &ue):
		fmt.Fprintf(w, "error: cannot reach the brain at %s: %v\n", brainURL, ue.Err)
	default:
		fmt.Fprintf(w, "error: %v\n", err)
	}
}

// ---- help ----

func helpCommand(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		mainUsage(stdout)
		return 0
	}
	g := findGroup(args[0])
	if g == nil {
		return failUsage(stderr, usagef("unknown command %q", args[0]), mainUsage)
	}
	if g.leaf != nil || len(args) == 1 {
		g.usage(stdout)
		return 0
	}
	c := g.find(args[1])
	if c == nil {
		return failUsage(stderr, usagef("unknown command %q", g.name+" "+args[1]), g.usage)
	}
	c.usage(stdout, g.name+" "+c.name)
	return 0
}

func mainUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: l2spanctl [global flags] COMMAND [SUBCOMMAND] [args] [flags]

l2spanctl drives the l2span brain: pods, spanned networks, subnets, ports,
gateways, and the desired state each pod's gateways program.

Commands:
`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, g := range groups() {
		fmt.Fprintf(tw, "  %s\t%s\n", g.name, g.summary)
	}
	fmt.Fprintf(tw, "  help\t%s\n", "help [COMMAND [SUBCOMMAND]]: show help")
	tw.Flush()
	fmt.Fprint(w, "\nGlobal flags:\n")
	printFlags(w, globalFlags(&env{}))
	fmt.Fprint(w, `
Errors from the brain print "error: MESSAGE (field: FIELD)" and exit 1;
command-line mistakes exit 2. Run "l2spanctl help COMMAND" for more.
`)
}

func (g *group) usage(w io.Writer) {
	if g.leaf != nil {
		g.leaf.usage(w, g.name)
		return
	}
	fmt.Fprintf(w, "Usage: l2spanctl [global flags] %s SUBCOMMAND [args] [flags]\n\n%s\n\nSubcommands:\n", g.name, g.summary)
	for _, c := range g.cmds {
		fmt.Fprintf(w, "  %s %s\n      %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintf(w, "\nRun \"l2spanctl %s SUBCOMMAND -h\" for its flags.\n", g.name)
}

func (c *command) usage(w io.Writer, path string) {
	fmt.Fprintf(w, "Usage: l2spanctl [global flags] %s %s\n\n%s\n", path, c.args, c.summary)
	fs, _ := c.flagSet(path, nil)
	fmt.Fprint(w, "\nFlags:\n")
	printFlags(w, fs)
}

// printFlags lists flags GNU style (--name VALUE), one per line.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	slices.Sort(names)
	for _, n := range names {
		f := fs.Lookup(n)
		arg, help := flag.UnquoteUsage(f)
		dash := "--"
		if len(n) == 1 {
			dash = "-"
		}
		spec := dash + n
		if arg != "" && !isBoolFlag(f) {
			spec += " " + arg
		}
		if _, ok := f.Value.(*listFlag); ok {
			spec += " (repeatable)"
		}
		if d := f.DefValue; d != "" && d != "false" && d != "0" && d != "[]" {
			help += fmt.Sprintf(" (default %s)", d)
		}
		fmt.Fprintf(tw, "  %s\t%s\n", spec, help)
	}
	tw.Flush()
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// listFlag is a repeatable flag whose values may also be comma-separated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}
