// Package flagfile gives daemons "defaults + file + flags" configuration with
// one set of names: a config file holds `key = value` lines whose keys are the
// daemon's flag names; a flag given on the command line wins over the file.
package flagfile

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"
)

// Apply reads path and sets every key not already set on the command line.
// Unknown keys and bad values are errors naming the file, line and key.
func Apply(fs *flag.FlagSet, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	explicit := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { explicit[fl.Name] = true })
	sc := bufio.NewScanner(f)
	line := 0
	seen := map[string]int{}
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		key, value, ok := strings.Cut(text, "=")
		if !ok {
			return fmt.Errorf("%s:%d: want key = value, got %q", path, line, text)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		value = strings.Trim(value, `"`)
		if fs.Lookup(key) == nil || key == "config" {
			return fmt.Errorf("%s:%d: unknown key %q", path, line, key)
		}
		if prev, dup := seen[key]; dup {
			return fmt.Errorf("%s:%d: key %q already set on line %d", path, line, key, prev)
		}
		seen[key] = line
		if explicit[key] {
			continue
		}
		if err := fs.Set(key, value); err != nil {
			return fmt.Errorf("%s:%d: key %q: %w", path, line, key, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return nil
}

// Parse parses args into fs, then applies the file named by the flag
// "config" if it is set.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c := fs.Lookup("config"); c != nil && c.Value.String() != "" {
		return Apply(fs, c.Value.String())
	}
	return nil
}
