//go:build ctrlexec_testknobs

package testknobs

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// Enabled reports whether this is a test build that honours the knobs.
const Enabled = true

// Lookup returns the value of knob from the environment.
func Lookup(knob string) string { return os.Getenv(knob) }

// Duration returns knob as a positive Go duration ("3s", "100ms"), or def
// when it is unset, invalid or not positive.
func Duration(knob string, def time.Duration) time.Duration {
	d, err := time.ParseDuration(Lookup(knob))
	if err != nil || d <= 0 {
		return def
	}
	return d
}

// ClaimPooledKey takes one key file of the given size out of the $KeyPool
// directory and returns its contents, or nil when there is no pool or no
// such key left. A file is claimed by renaming it, so concurrent processes
// never share a key.
func ClaimPooledKey(bits int) []byte {
	dir := Lookup(KeyPool)
	if dir == "" {
		return nil
	}
	names, _ := filepath.Glob(filepath.Join(dir, "rsa"+strconv.Itoa(bits)+"-*.pem"))
	sort.Strings(names)
	for _, name := range names {
		claimed := fmt.Sprintf("%s.claimed-%d", name, os.Getpid())
		if os.Rename(name, claimed) != nil {
			continue // another process took it
		}
		data, err := os.ReadFile(claimed)
		os.Remove(claimed)
		if err == nil {
			return data
		}
	}
	return nil
}
