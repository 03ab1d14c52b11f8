//go:build !ctrlexec_testknobs

package testknobs

import "time"

// Enabled reports whether this is a test build that honours the knobs.
const Enabled = false

// Lookup returns the value of knob; a release build always returns "".
func Lookup(knob string) string { return "" }

// ClaimPooledKey returns nil in a release build: keys are always generated.
func ClaimPooledKey(bits int) []byte { return nil }

// Duration returns def in a release build.
func Duration(knob string, def time.Duration) time.Duration { return def }
